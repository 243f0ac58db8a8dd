// How sequence_forward / sequence_backward use the measured thread plan (rnncore/thread_plan.h).
#pragma once

#include <chrono>
#include <exception>
#include <cstdint>

#include "rnncore/sequence.h"
#include "rnncore/thread_plan.h"

namespace rnncore {
namespace detail {

enum class PassKind { Inference = 0, TrainingForward = 1, Backward = 2 };

// Times one call where the measured plan applies, for as long as it lives: the constructor picks
// team or alone (and caps the calling thread's threads to 1 for alone), the destructor reports
// the time and lifts the cap. A call left by an exception is not reported. Where the plan does
// not apply it does nothing.
class MeasuredCall {
 public:
  MeasuredCall(PassKind pass, const ModelConfig& config, int scalar_bytes, int64_t steps,
               int64_t batch, bool lengths);
  ~MeasuredCall();
  MeasuredCall(const MeasuredCall&) = delete;
  MeasuredCall& operator=(const MeasuredCall&) = delete;

 private:
  void report() noexcept;

  TeamOrAlone* entry_ = nullptr;  // the registry's entry; nullptr: not measured
  uint64_t generation_ = 0;       // the registry's generation when entry_ was taken
  TeamOrAlone::Option option_ = TeamOrAlone::Team;
  int64_t steps_ = 0;
  int saved_cap_ = 0;
  int exceptions_ = 0;  // std::uncaught_exceptions() when the call started
  std::chrono::steady_clock::time_point start_;
};

}  // namespace detail
}  // namespace rnncore
