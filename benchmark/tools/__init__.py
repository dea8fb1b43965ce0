"""One-off tools outside the ``plan -> run -> report`` pipeline, each run on its own:

* ``python -m benchmark.tools.roofline`` — KSD and SVGD kernel throughput against a roofline;
* ``python -m benchmark.tools.device_report STORE_A STORE_B`` — timings and statistical
  agreement of one matrix run on two devices;
* ``python -m benchmark.tools.blr_reference --dataset NAME`` — the BLR reference posteriors;
* ``python -m benchmark.tools.neural_trial`` and ``python -m benchmark.tools.tune_ebm`` —
  tuning trials of the neural samplers (docs/tuning.md);
* ``bash benchmark/tools/gpu_check.sh`` — the CUDA path of the 2-D suite, timed and compared.

May import anything; nothing in the pipeline imports a tool.
"""
