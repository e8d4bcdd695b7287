# liteseg_ros developer entry points.
#
#   make venv   create/refresh .venv (idempotent; a stamp file makes re-runs instant)
#   make demo   run the ROS 2 node on a generated image sequence, write PNGs to ./demo_output/
#   make test   run the test suite (pytest) in .venv
#   make lint   run only the linters (ament_flake8, ament_pep257, copyright)
#   make clean  remove build outputs (keeps .venv); `make distclean` removes .venv too
#
# Variables: PYTHON (interpreter used to create the venv, default python3), VENV (default
# .venv), PYTEST_ARGS (extra pytest arguments), DEMO_ARGS (extra `liteseg node-demo` arguments,
# e.g. DEMO_ARGS="--checkpoint pp_liteseg_t.pt --frames 60").
# With a sourced ROS 2 (ROS_DISTRO set) the pip ROS 2 wheels (requirements-ros.txt) are NOT
# installed: rclpy and the messages come from the ROS install.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

ifdef ROS_DISTRO
ROS_MODE := ros-$(ROS_DISTRO)
REQ_ROS :=
else
ROS_MODE := pipros
REQ_ROS := -r requirements-ros.txt
endif

STAMP := $(VENV)/.liteseg-stamp-$(ROS_MODE)
PIP := $(VPY) -m pip install $(if $(CI),--progress-bar off,)

.PHONY: help venv test demo lint clean distclean

help:
	@sed -n '3,8p' Makefile | sed 's/^# \{0,1\}//'

venv: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt requirements-dev.txt setup.py setup.cfg package.xml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: '$(PYTHON)' not found. Install Python >= 3.10 (Debian/Ubuntu:" \
	       "sudo apt-get install python3 python3-venv) or run: make PYTHON=/path/to/python3 ..." >&2; \
	  exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { \
	  echo "error: liteseg_ros needs Python >= 3.10, but '$(PYTHON)' is" \
	       "$$($(PYTHON) -V 2>&1). Install a newer Python and run: make PYTHON=python3.X ..." >&2; \
	  exit 1; }
	@if [ -e "$(VENV)" ] && ! "$(VPY)" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
	     >/dev/null 2>&1; then \
	  echo "$(VENV) is broken or uses Python < 3.10: recreating it"; rm -rf "$(VENV)"; fi
	@if [ ! -x "$(VPY)" ]; then \
	  echo "Creating $(VENV) with $$($(PYTHON) -V 2>&1) ($$(command -v $(PYTHON)))"; \
	  if ! $(PYTHON) -m venv "$(VENV)"; then \
	    rm -rf "$(VENV)"; \
	    v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	    echo "" >&2; \
	    echo "error: '$(PYTHON) -m venv' failed. On Debian/Ubuntu the venv module (ensurepip)" \
	         "is packaged separately: run 'sudo apt-get install python3-venv'" \
	         "(or python$$v-venv) and then re-run make." >&2; \
	    exit 1; \
	  fi; \
	fi
	$(PIP) --upgrade pip
	$(PIP) 'setuptools>=64'
	$(PIP) -r requirements.txt $(REQ_ROS) -r requirements-dev.txt
	$(PIP) --no-build-isolation --no-deps -e .
	@# Editable installs skip setup.py's data_files: register the package in the venv's ament
	@# index by hand (symlinks, like colcon --symlink-install) so ament_index_python finds it.
	@mkdir -p $(VENV)/share/ament_index/resource_index/packages $(VENV)/share/liteseg_ros
	@cp resource/liteseg_ros $(VENV)/share/ament_index/resource_index/packages/liteseg_ros
	@for f in package.xml launch config; do ln -sfn "$(CURDIR)/$$f" "$(VENV)/share/liteseg_ros/$$f"; done
	@# ros2 run / ros2 launch look for executables in <prefix>/lib/<package>/.
	@mkdir -p $(VENV)/lib/liteseg_ros
	@ln -sfn ../../bin/segment_node $(VENV)/lib/liteseg_ros/segment_node
	@rm -f $(VENV)/.liteseg-stamp-*
	@touch $@
	@echo "$(VENV) is ready ($(if $(REQ_ROS),pip ROS 2 wheels,ROS 2 from $(ROS_DISTRO)))."

test: venv
	$(VPY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/liteseg node-demo $(DEMO_ARGS)

lint: venv
	$(VPY) -m pytest -m linter $(PYTEST_ARGS)

clean:
	rm -rf build install log demo_output .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache
