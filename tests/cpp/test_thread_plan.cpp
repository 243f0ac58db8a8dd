// The measured thread plan (thread_plan.h): the choice between a call's team of threads and one
// thread, driven by synthetic times, and what the plan does to real calls (it only ever changes
// who computes, never the bits).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "parallel.h"
#include "rnncore/sequence.h"
#include "rnncore/thread_plan.h"
#include "thread_policy.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using rnncore::detail::TeamOrAlone;

// Feeds `calls` calls to `choice`, each taking team or alone seconds per step as asked for;
// returns how many ran on one thread.
int64_t feed(TeamOrAlone& choice, int64_t calls, double team, double alone) {
  int64_t alone_calls = 0;
  for (int64_t i = 0; i < calls; ++i) {
    const TeamOrAlone::Option option = choice.next();
    if (option == TeamOrAlone::Alone) ++alone_calls;
    choice.record(option, option == TeamOrAlone::Team ? team : alone);
  }
  return alone_calls;
}

TEST(TeamOrAlone, WarmsUpOnTheTeamThenTimesBoth) {
  TeamOrAlone choice;
  EXPECT_EQ(choice.next(), TeamOrAlone::Team);
  choice.record(TeamOrAlone::Team, 100.0);  // the warm-up: not counted
  EXPECT_EQ(choice.estimate(TeamOrAlone::Team), 0.0);
  EXPECT_EQ(choice.next(), TeamOrAlone::Alone);
  choice.record(TeamOrAlone::Alone, 1.0);
  EXPECT_EQ(choice.next(), TeamOrAlone::Team);
  choice.record(TeamOrAlone::Team, 0.8);
  EXPECT_FALSE(choice.decided());  // 1.25x apart: not clear enough after one sample each
  EXPECT_EQ(choice.next(), TeamOrAlone::Alone);
  choice.record(TeamOrAlone::Alone, 1.0);
  EXPECT_EQ(choice.next(), TeamOrAlone::Team);
  choice.record(TeamOrAlone::Team, 0.8);
  ASSERT_TRUE(choice.decided());
  EXPECT_EQ(choice.choice(), TeamOrAlone::Team);
  EXPECT_EQ(choice.calls(), 5);
  EXPECT_EQ(choice.alone_calls(), 2);
}

TEST(TeamOrAlone, DecidesAfterOneSampleEachWhenClear) {
  TeamOrAlone slow_team;
  feed(slow_team, 3, 20.0, 1.0);  // warm-up, alone, team 20x slower
  ASSERT_TRUE(slow_team.decided());
  EXPECT_EQ(slow_team.choice(), TeamOrAlone::Alone);
  TeamOrAlone fast_team;
  feed(fast_team, 3, 0.5, 1.0);
  ASSERT_TRUE(fast_team.decided());
  EXPECT_EQ(fast_team.choice(), TeamOrAlone::Team);
}

TEST(TeamOrAlone, TheTeamMustWinByTheMargin) {
  TeamOrAlone barely;
  feed(barely, 50, 0.97, 1.0);  // 3% faster: not worth a second core
  EXPECT_EQ(barely.choice(), TeamOrAlone::Alone);
  TeamOrAlone clearly;
  feed(clearly, 50, 0.90, 1.0);
  EXPECT_EQ(clearly.choice(), TeamOrAlone::Team);
}

TEST(TeamOrAlone, ProbesCostLittleOnceSettled) {
  // Team twice as fast: after the first calls, one call on one thread per 256.
  TeamOrAlone team;
  feed(team, 10, 0.5, 1.0);
  EXPECT_LE(feed(team, 10000, 0.5, 1.0), 10000 / TeamOrAlone::kTeamProbeInterval + 1);
  // Team 10x slower (a busy second core): probes of it limited to ~3% of the time, each a
  // waking call and one timed call (a probe that does not beat the choice stops at once).
  TeamOrAlone alone;
  feed(alone, 10, 10.0, 1.0);
  const int64_t calls = 20000;
  const int64_t alone_calls = feed(alone, calls, 10.0, 1.0);
  const double extra = static_cast<double>(calls - alone_calls) * 9.0;
  EXPECT_LE(extra, 0.035 * static_cast<double>(alone_calls) * 1.0) << calls - alone_calls;
  EXPECT_GE(extra, 0.01 * static_cast<double>(alone_calls) * 1.0) << calls - alone_calls;
  EXPECT_GT(calls - alone_calls, 0);  // but it does keep looking
}

TEST(TeamOrAlone, FollowsTheMachine) {
  TeamOrAlone choice;
  feed(choice, 20, 0.6, 1.0);
  ASSERT_EQ(choice.choice(), TeamOrAlone::Team);
  // The second core gets busy: the team's own times move the choice, within a few calls.
  feed(choice, 4, 1.5, 1.0);
  EXPECT_EQ(choice.choice(), TeamOrAlone::Alone);
  // It frees up again: the next probe of the team finds it (after ~40 calls, what a probe of a
  // team 1.2x slower may cost, warm-up call included) and, promising, goes on for fresh samples
  // instead of being outvoted by the slow ones from before.
  const int64_t alone_calls = feed(choice, 60, 0.6, 1.0);
  EXPECT_EQ(choice.choice(), TeamOrAlone::Team);
  EXPECT_LE(alone_calls, 45);
  EXPECT_EQ(choice.next(), TeamOrAlone::Team);
}

TEST(TeamOrAlone, AProbeOfTheTeamDiscardsTheCallThatWakesIt) {
  TeamOrAlone choice;
  feed(choice, 10, 3.0, 1.0);
  ASSERT_EQ(choice.choice(), TeamOrAlone::Alone);
  while (choice.next() == TeamOrAlone::Alone) choice.record(TeamOrAlone::Alone, 1.0);
  choice.record(TeamOrAlone::Team, 50.0);  // waking the sleeping threads
  EXPECT_EQ(choice.next(), TeamOrAlone::Team);  // the probe goes on
  for (int i = 0; i < TeamOrAlone::kSamples - 1; ++i) {
    ASSERT_EQ(choice.next(), TeamOrAlone::Team) << i;
    choice.record(TeamOrAlone::Team, 0.5);
  }
  EXPECT_EQ(choice.choice(), TeamOrAlone::Team);
}

TEST(TeamOrAlone, OneHugeSampleDoesNotStopTheProbes) {
  TeamOrAlone choice;
  choice.record(choice.next(), 1.0);   // warm-up
  choice.record(choice.next(), 1.0);   // alone
  choice.record(choice.next(), 300.0); // the team, once, delayed by milliseconds: clear, alone
  ASSERT_TRUE(choice.decided());
  ASSERT_EQ(choice.choice(), TeamOrAlone::Alone);
  // The next probe comes on schedule (not after the ~60000 calls that 300x would justify).
  feed(choice, 40, 0.6, 1.0);
  EXPECT_EQ(choice.choice(), TeamOrAlone::Team);
}

TEST(TeamOrAlone, OneSlowCallDoesNotCondemnAnOption) {
  TeamOrAlone choice;
  feed(choice, 20, 0.6, 1.0);
  ASSERT_EQ(choice.choice(), TeamOrAlone::Team);
  choice.record(TeamOrAlone::Team, 30.0);  // a wake-up that took milliseconds
  EXPECT_EQ(choice.choice(), TeamOrAlone::Team);
  // ... but a team slow every other call is slow.
  for (int i = 0; i < 4; ++i) choice.record(TeamOrAlone::Team, i % 2 ? 0.6 : 2.0);
  EXPECT_EQ(choice.choice(), TeamOrAlone::Alone);
}

rnncore::ModelConfig lstm(int64_t input, int64_t hidden) {
  rnncore::ModelConfig c;
  c.cell = rnncore::CellKind::Lstm;
  c.input_size = input;
  c.hidden_size = hidden;
  return c;
}

// Runs the same inference call `calls` times under the measured plan with two threads; every
// output must equal the first bit for bit, and the plan must have timed the kind of call.
TEST(MeasuredPlan, RepeatedCallsGiveTheSameBits) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP: there is no second thread";
#else
  const int before = omp_get_max_threads();
  omp_set_num_threads(2);
  rnncore::set_thread_plan(rnncore::ThreadPlan::Measured);
  rnncore::reset_thread_plan();
  const rnncore::ModelConfig config = lstm(24, 40);
  const int64_t T = 60, N = 6, H = 40, gh = 4 * H;
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 0.4f);
  const auto random = [&](int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = normal(gen);
    return v;
  };
  const std::vector<float> w_ih = random(gh * 24), w_hh = random(gh * H), b_ih = random(gh),
                           b_hh = random(gh), x = random(T * N * 24);
  const std::vector<rnncore::DirectionWeights<float>> weights{
      {w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data()}};
  std::vector<float> first;
  for (int call = 0; call < 30; ++call) {
    std::vector<float> y(static_cast<std::size_t>(T * N * H)), h_n(N * H), c_n(N * H);
    rnncore::sequence_forward<float>(config, weights, T, N, x.data(), nullptr, nullptr, nullptr,
                                     y.data(), h_n.data(), c_n.data(), nullptr);
    if (call == 0) {
      first = y;
    } else {
      ASSERT_EQ(y, first) << "call " << call;
    }
  }
  const std::vector<rnncore::ThreadPlanEntry> report = rnncore::thread_plan_report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0].pass, "inference");
  EXPECT_EQ(report[0].hidden_size, H);
  EXPECT_EQ(report[0].batch, N);
  EXPECT_LE(report[0].steps_from, T);
  EXPECT_GE(report[0].steps_to, T);
  EXPECT_EQ(report[0].calls, 30);
  EXPECT_TRUE(report[0].decided);
  EXPECT_GE(report[0].alone_calls, 1);
  // Fixed: nothing more is timed.
  rnncore::set_thread_plan(rnncore::ThreadPlan::Fixed);
  std::vector<float> y(first.size()), h_n(N * H), c_n(N * H);
  rnncore::sequence_forward<float>(config, weights, T, N, x.data(), nullptr, nullptr, nullptr,
                                   y.data(), h_n.data(), c_n.data(), nullptr);
  EXPECT_EQ(y, first);
  EXPECT_EQ(rnncore::thread_plan_report()[0].calls, 30);
  rnncore::set_thread_plan(rnncore::ThreadPlan::Measured);
  rnncore::reset_thread_plan();
  EXPECT_TRUE(rnncore::thread_plan_report().empty());
  omp_set_num_threads(before);
#endif
}

TEST(MeasuredPlan, TheCapLimitsTheCallingThreadsKernels) {
  const int threads = rnncore::max_threads();
  rnncore::detail::thread_cap() = 1;
  EXPECT_EQ(rnncore::max_threads(), 1);
  rnncore::detail::thread_cap() = 0;
  EXPECT_EQ(rnncore::max_threads(), threads);
}

}  // namespace
