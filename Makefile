# paperforge — the two commands of the README quick start, and friends.
#   make demo   create .venv if missing, install, train + evaluate the default experiment (dynvit/digits_relu_ln)
#   make test   create .venv if missing, install with [dev], run the fast test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
STAMP_DEV := $(VENV)/.installed-dev
# pinned here too so pip resolves torch first (from a local mirror where one exists)
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint install install-dev demo-yolact demo-anomaly demo-nohnms demo-denseclip demo-edgesam demo-ovsam clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[dev]"
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(STAMP_DEV)

demo: $(STAMP)
	$(VENV)/bin/forge-train experiment=dynvit/digits_relu_ln

# YOLACT on the synthetic shapes set, CPU, about 10 minutes of training (11.5 min in all on a CPU with AVX512-BF16,
# ~19 without): generate data, train, evaluate (COCO box/mask AP), draw
demo-yolact: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH bash tools/demo_yolact.sh

# MO-GAAL on the bundled breast-cancer outlier set (ROC-AUC, AP, precision@n), then Rglasso on the same data
demo-anomaly: $(STAMP)
	$(VENV)/bin/forge-train experiment=anomaly/mogaal_breast_cancer
	$(VENV)/bin/forge-train experiment=anomaly/rglasso_breast_cancer

# NOH-NMS on synthetic crowds, CPU, from scratch: generate data, train a ResNet-18-FPN Faster R-CNN with the
# hallucinator, compare greedy NMS and NOH-NMS on the same detections (AP, recall, MR^-2), record them in
# docs/benchmarks.md (section nohnms-demo) with docs/img/nohnms_demo.png; NOHNMS_ARGS= skips the recording
NOHNMS_ARGS ?= --record
demo-nohnms: $(STAMP)
	OMP_NUM_THREADS=2 nice -n 10 $(PY) -m nohnms.demo $(NOHNMS_ARGS)

# DenseCLIP: train a small CLIP on synthetic coloured shapes, MaskCLIP on it, MaskCLIP+ on MaskCLIP's pseudo-labels,
# then MaskCLIP's mIoU under ImageNet-C corruptions via forge-test; about 7 CPU minutes; docs/benchmarks.md sections
demo-denseclip: $(STAMP)
	OMP_NUM_THREADS=1 nice -n 10 $(VENV)/bin/python benchmarks/denseclip_demo.py
	OMP_NUM_THREADS=1 nice -n 10 $(VENV)/bin/python benchmarks/denseclip_corruption.py \
	  --experiment denseclip/maskclip_colour_shapes --checkpoint work_dirs/denseclip_demo/clip.pt \
	  --set dataset.root=work_dirs/denseclip_demo/val --set model.maskclip.clip_path=work_dirs/denseclip_demo/clip.pt \
	  --set runtime.device=cpu --severities 1,3,5 --md docs/benchmarks.md \
	  --note "The demo's CLIP (make demo-denseclip) on its synthetic colour split."

# EdgeSAM: train a small SAM teacher on the shapes set (GT-box mIoU >= 0.7), distil a small RepViT student through
# both phases (encoder KD, prompt-in-the-loop KD) on the shared runner; mIoU vs GT and vs teacher per phase, figure
# docs/img/edgesam_demo.png, docs/benchmarks.md section edgesam-demo
demo-edgesam: $(STAMP)
	OMP_NUM_THREADS=1 nice -n 10 $(VENV)/bin/python benchmarks/edgesam_demo.py

# Open-Vocabulary SAM from the small CLIP of demo-denseclip and the small SAM of demo-edgesam (trained here if
# absent): SAM2CLIP distillation (val feature MSE before / after), CLIP2SAM on a colour + shape vocabulary with the
# words "orange" and "cross" held out of training (base / held-out accuracy and mask IoU, chance beside); about 4
# CPU minutes on 2 free cores; figure docs/img/ovsam_demo.png, docs/benchmarks.md section ovsam-demo
demo-ovsam: $(STAMP)
	OMP_NUM_THREADS=2 nice -n 10 $(VENV)/bin/python benchmarks/ovsam_demo.py

test: $(STAMP_DEV)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP_DEV)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .

clean:
	rm -rf work_dirs outputs multirun
