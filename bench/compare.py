#!/usr/bin/env python3
"""rnncore vs PyTorch and ONNX Runtime: see rnncore.benchmark (also `rnncore bench`).

    python bench/compare.py [--full] [--threads 1,2] [--json out.json] [--png out.png] ...
"""
import sys

from rnncore.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
