# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test stages app gpu-check clean-venv

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

# the web page (app.py) and its browser tests: a separate file keeps training installs lean
APP_STAMP := $(VENV)/.requirements-app-installed
$(APP_STAMP): requirements-app.txt requirements.txt $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-app.txt
	touch $(APP_STAMP)

# FCN-32s (config 100) on the photos bundled with scikit-image, its log plot,
# then colorize those photos with the best model and evaluate it.
demo: $(STAMP)
	$(PY) train_color_fcn32s.py -c 100
	@run=$$(ls -td logs/*_CFG-100_* | head -n 1); \
	$(PY) -c "from utils import plot_log_csv; print('plot:', plot_log_csv('$$run/log.csv'))" && \
	$(PY) colorize.py -m $$run/model_best.pth.tar -o $$run/colorized data/bundled && \
	$(PY) evaluate.py -m $$run/model_best.pth.tar -o $$run/evaluation && \
	echo "" && echo "outputs in $$run: log.csv, log_plots.png, config.yaml, checkpoint.pth.tar," && \
	echo "  model_best.pth.tar, visualization_viz/, colorized/, evaluation/metrics.json"

# the next two stages of the demo, each from the previous stage's best model
stages: $(STAMP)
	$(PY) train_color_fcn16s.py -c 101
	$(PY) train_color_fcn8s.py -c 102

# the web page with the newest model_best.pth.tar under logs/ (the one `make demo` trained), on 127.0.0.1:7860
app: $(APP_STAMP)
	@model=$$(ls -t logs/*/model_best.pth.tar 2>/dev/null | head -n 1); \
	if [ -z "$$model" ]; then echo "error: no logs/*/model_best.pth.tar yet: run make demo first" >&2; exit 2; fi; \
	echo "serving $$model"; $(PY) app.py -m "$$model"

# a passing test's tmp_path is deleted when it ends: the suite's run folders (checkpoints of ~60-190 MB)
# would otherwise add up to ~8 GB under /tmp, more than some CI machines hold
test: $(STAMP) $(APP_STAMP)
	$(PY) -m pytest -q -o tmp_path_retention_policy=failed --durations=15 tests

# a CUDA machine in one command: CUDA-only tests, both benchmarks on the device, 100 bf16 training
# steps of FCN-32s at 256x256, float32 CUDA vs CPU on one batch; ends with one JSON line
# (without CUDA: one line, nothing to check, exit 0)
gpu-check: $(STAMP)
	@$(PY) bench/gpu_check.py

clean-venv:
	rm -rf $(VENV)
