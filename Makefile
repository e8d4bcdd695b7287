# liteseg_ros developer entry points.
#
#   make venv   create/refresh the venv from the lock files (idempotent; a stamp makes re-runs instant)
#   make demo   run the ROS 2 node on a generated image sequence, write PNGs to ./demo_output/
#   make test   run the test suite (pytest) in the venv; `make lint` runs only the linters
#   make lock   regenerate locks/*.txt from the requirement files (uv pip compile)
#   make clean  remove build outputs (keeps venvs); `make distclean` removes venvs and .cache too
#
# Variables: PYTHON (interpreter, default python3), ROS (pip ROS 2 wheels: kilted or jazzy),
# LOCK (1: exact versions from locks/; 0: newest versions, in a separate venv), VENV,
# PYTEST_ARGS, DEMO_ARGS (e.g. DEMO_ARGS="--checkpoint pp_liteseg_t.pt --frames 60").
# Python 3.11 gets everything; other Pythons get the torch- and ROS-free set (requirements-lite.txt)
# and run the tests marked `lite`, with ONNX models made by the 3.11 venv (MODEL_PYTHON).
# With a sourced ROS 2 (ROS_DISTRO set) the pip ROS 2 wheels are NOT installed: rclpy and the
# messages come from the ROS install, and the Python requirements are installed unlocked.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
ROS ?= kilted
LOCK ?= 1
PYTEST_ARGS ?=
DEMO_ARGS ?=
MODEL_PYTHON ?= python3.11

PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ROS_REQ_kilted := requirements-ros.txt
ROS_REQ_jazzy := requirements-ros-jazzy.txt

ifeq ($(filter $(ROS),kilted jazzy),)
$(error ROS=$(ROS): the pip ROS 2 wheels exist for kilted and jazzy only)
endif

ifdef ROS_DISTRO
PROFILE := ros-$(ROS_DISTRO)
REQS := requirements.txt requirements-dev.txt
DEFAULT_VENV := .venv
LOCKFILE :=
else ifeq ($(PYVER),3.11)
PROFILE := $(ROS)
REQS := requirements.txt $(ROS_REQ_$(ROS)) requirements-dev.txt requirements-fleet.txt \
  requirements-openvino.txt
NODEPS := requirements-nodeps.txt
DEFAULT_VENV := $(if $(filter kilted,$(ROS)),.venv,.venv-$(ROS))
LOCKFILE := locks/$(ROS)-py3.11.txt
else
PROFILE := lite
REQS := requirements-lite.txt requirements-openvino.txt
DEFAULT_VENV := .venv-py$(PYVER)
LOCKFILE := locks/lite-py$(PYVER).txt
endif
ifeq ($(LOCK),0)
DEFAULT_VENV := $(DEFAULT_VENV)-unlocked
INSTALL_FROM := $(addprefix -r ,$(REQS))
else
INSTALL_FROM := $(if $(LOCKFILE),-r $(LOCKFILE),$(addprefix -r ,$(REQS)))
endif
VENV ?= $(DEFAULT_VENV)
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip install $(if $(CI),--progress-bar off,)
STAMP := $(VENV)/.liteseg-stamp-$(PROFILE)-lock$(LOCK)
# What `make test` checks the venv against (test/test_lock.py); empty when unlocked.
TEST_LOCK := $(if $(filter 0,$(LOCK)),,$(LOCKFILE))
TEST_NODEPS := $(if $(TEST_LOCK),$(NODEPS))
TEST_MODELS := .cache/test-models
MODEL_VENV := .venv$(if $(filter 0,$(LOCK)),-unlocked)
ifeq ($(PROFILE),lite)
# The modules marked lite as a whole (they import neither torch nor rclpy at the top).
TEST_SELECT := -m 'lite and not ros' $(shell grep -l '^pytestmark = pytest.mark.lite' test/test_*.py)
TEST_DEPS := $(TEST_MODELS)/.stamp
endif

.PHONY: help venv test demo lint lock clean distclean test-models

help:
	@sed -n '3,15p' Makefile | sed 's/^# \{0,1\}//'

venv: $(STAMP)

$(STAMP): $(REQS) $(NODEPS) $(LOCKFILE) setup.py setup.cfg package.xml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 && [ -n "$(PYVER)" ] || { \
	  echo "error: '$(PYTHON)' not found. Install Python >= 3.10 (Debian/Ubuntu:" \
	       "sudo apt-get install python3 python3-venv) or run: make PYTHON=/path/to/python3 ..." >&2; \
	  exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { \
	  echo "error: liteseg_ros needs Python >= 3.10, but '$(PYTHON)' is" \
	       "$$($(PYTHON) -V 2>&1). Install a newer Python and run: make PYTHON=python3.X ..." >&2; \
	  exit 1; }
	@if [ -n "$(LOCKFILE)" ] && [ ! -f "$(LOCKFILE)" ]; then \
	  echo "error: no lock file $(LOCKFILE) for Python $(PYVER) ($(PROFILE)); run 'make lock'" \
	       "with a venv that has uv, or 'make venv LOCK=0' for unlocked newest versions" >&2; \
	  exit 1; fi
	@if [ -e "$(VENV)" ] && ! "$(VPY)" -c 'import sys; sys.exit(0 if sys.version_info[:2] == tuple(map(int, "$(PYVER)".split("."))) else 1)' \
	     >/dev/null 2>&1; then \
	  echo "$(VENV) is broken or not Python $(PYVER): recreating it"; rm -rf "$(VENV)"; fi
	@if [ ! -x "$(VPY)" ]; then \
	  echo "Creating $(VENV) with $$($(PYTHON) -V 2>&1) ($$(command -v $(PYTHON)))"; \
	  if ! $(PYTHON) -m venv "$(VENV)"; then \
	    rm -rf "$(VENV)"; \
	    echo "" >&2; \
	    echo "error: '$(PYTHON) -m venv' failed. On Debian/Ubuntu the venv module (ensurepip)" \
	         "is packaged separately: run 'sudo apt-get install python3-venv'" \
	         "(or python$(PYVER)-venv) and then re-run make." >&2; \
	    exit 1; \
	  fi; \
	fi
	$(PIP) $(INSTALL_FROM)
ifneq ($(PROFILE),lite)
	$(if $(NODEPS),$(PIP) --no-deps -r $(NODEPS))
	$(PIP) --no-build-isolation --no-deps -e .
	@# Editable installs skip setup.py's data_files: register the package in the venv's ament
	@# index by hand (symlinks, like colcon --symlink-install) so ament_index_python finds it.
	@mkdir -p $(VENV)/share/ament_index/resource_index/packages $(VENV)/share/liteseg_ros
	@cp resource/liteseg_ros $(VENV)/share/ament_index/resource_index/packages/liteseg_ros
	@for f in package.xml launch config; do ln -sfn "$(CURDIR)/$$f" "$(VENV)/share/liteseg_ros/$$f"; done
	@# ros2 run / ros2 launch look for executables in <prefix>/lib/<package>/.
	@mkdir -p $(VENV)/lib/liteseg_ros
	@ln -sfn ../../bin/segment_node $(VENV)/lib/liteseg_ros/segment_node
endif
	@rm -f $(VENV)/.liteseg-stamp-*
	@touch $@
	@echo "$(VENV) is ready ($(PROFILE), Python $(PYVER), $(if $(TEST_LOCK),locked: $(TEST_LOCK),unlocked))."

# ONNX models for the torch-free (lite) test runs, exported by the Python 3.11 venv; made
# again when the model or the export code changes.
test-models: $(TEST_MODELS)/.stamp

$(TEST_MODELS)/.stamp: test/make_test_models.py test/onnx_models.py \
		$(wildcard training/*.py liteseg_ros/model/*.py)
	$(MAKE) venv PYTHON=$(MODEL_PYTHON) ROS=kilted LOCK=$(LOCK) VENV=$(MODEL_VENV)
	$(MODEL_VENV)/bin/python test/make_test_models.py $(TEST_MODELS)
	@touch $@

TEST_ENV := LITESEG_LOCK_FILE=$(TEST_LOCK) LITESEG_NODEPS_FILE=$(TEST_NODEPS) \
  LITESEG_TEST_MODELS=$(CURDIR)/$(TEST_MODELS)

test: venv $(TEST_DEPS)
	$(TEST_ENV) $(VPY) -m pytest $(TEST_SELECT) $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/liteseg node-demo $(DEMO_ARGS)

lint: venv
	$(VPY) -m pytest -m linter $(PYTEST_ARGS)

# Locks for every profile; off this machine, CPU torch needs PyTorch's CPU wheel index, e.g.
# `make lock UV_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`.
LOCK_ARGS := --python-platform x86_64-manylinux_2_28 --quiet
UV ?= $(firstword $(wildcard $(VENV)/bin/uv .venv/bin/uv) uv)
lock:
	UV_FIND_LINKS="$${UV_FIND_LINKS:-$${PIP_FIND_LINKS:-}}" $(UV) pip compile $(LOCK_ARGS) \
	  --python-version 3.11 requirements.txt requirements-ros.txt requirements-dev.txt \
	  requirements-fleet.txt requirements-openvino.txt -o locks/kilted-py3.11.txt
	UV_FIND_LINKS="$${UV_FIND_LINKS:-$${PIP_FIND_LINKS:-}}" $(UV) pip compile $(LOCK_ARGS) \
	  --python-version 3.11 requirements.txt requirements-ros-jazzy.txt requirements-dev.txt \
	  requirements-fleet.txt requirements-openvino.txt -o locks/jazzy-py3.11.txt
	for v in 3.10 3.12; do \
	  $(UV) pip compile $(LOCK_ARGS) --python-version $$v requirements-lite.txt \
	    requirements-openvino.txt -o locks/lite-py$$v.txt || exit 1; done

clean:
	rm -rf build install log demo_output .pytest_cache *.egg-info
	find . -path './.venv*' -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv .venv-* .cache
