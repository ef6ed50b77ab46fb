# maad — real-time surface-defect inspection daemon.
#   make          build everything under build/
#   make test     build and run every test; ends with "N passed, N failed"
#   make demo     a live line on a fake GigE camera (see README)
#   make fuzz     the libFuzzer harnesses, FUZZ_SECONDS each (docs/fuzzing.md)
# CUDA is built when $(CUDA)/bin/nvcc exists; CUDA_ARCHS lists the targets.

CC         ?= cc
CUDA       ?= /usr/local/cuda
CUDA_ARCHS ?= sm_90
PYTHON     ?= /usr/bin/python3
B          := build

PKGS   := aravis-0.8 libsystemd yaml-0.1 libzmq jansson spng lapacke libmodbus libmicrohttpd
PKGS_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKGS_LIBS   := $(shell pkg-config --libs $(PKGS))
# Everything but OpenMP's runtime, which is the compiler's own.
BASE_LIBS   := $(PKGS_LIBS) -ldnnl -lopenblas -lm -pthread
CFLAGS ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -fopenmp \
                   -MMD -MP -I. $(PKGS_CFLAGS)
LDLIBS := $(BASE_LIBS) -lgomp

NVCC      := $(CUDA)/bin/nvcc
HAVE_CUDA := $(if $(and $(wildcard $(NVCC)),$(wildcard engine/backend_cuda.c)),1,)

# The cuda backend's host files need the toolkit's headers.
CUDA_SRC   := engine/backend_cuda.c engine/cudnn_plan.c
ENGINE_SRC := $(filter-out $(CUDA_SRC),$(wildcard engine/*.c))
ifeq ($(HAVE_CUDA),1)
ENGINE_SRC += $(CUDA_SRC)
ENGINE_CU  := $(wildcard engine/*.cu)
override CFLAGS += -DMAA_HAVE_CUDA -DMAA_CUDA_DIR='"$(CUDA)"' -I$(CUDA)/include
LDLIBS     += -L$(CUDA)/lib64 -Wl,-rpath,$(CUDA)/lib64 -lcudnn -lcudart
NVFLAGS    := -O3 -std=c++17 -I. -Xcompiler -Wall,-Werror -MMD -MP \
              $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a:sm_%=%),code=$(a))
endif

CAMERA_SRC := $(wildcard camera/*.c)
CONFIG_SRC := $(wildcard config/*.c)
# daemon/: maad.c is the daemon's main; the rest is shared by maad, the maa
# tool (maa/) and the PLC bridge (plc/).
MAAD_MAIN  := daemon/maad.c
MAA_MAIN   := maa/maa.c
MAA_SRC    := $(wildcard maa/*.c)
DAEMON_SRC := $(filter-out $(MAAD_MAIN),$(wildcard daemon/*.c))
# plc/: maa-plc.c is the PLC bridge's main, the rest its library.
PLC_MAIN   := plc/maa-plc.c
PLC_SRC    := $(filter-out $(PLC_MAIN),$(wildcard plc/*.c))
TEST_SRC   := $(wildcard tests/test_*.c)
# Test helpers are programs the Python and shell tests drive.
HELPER_SRC := $(wildcard tests/helper_*.c)

# Objects live under $(B)/obj/, mirroring the source tree, so that a
# program may share its name with its source folder (build/maa, maa/).
obj = $(patsubst %.c,$(B)/obj/%.o,$(filter %.c,$(1))) $(patsubst %.cu,$(B)/obj/%.cu.o,$(filter %.cu,$(1)))

LIBS := $(B)/libplc.a $(B)/libmaad.a $(B)/libcamera.a $(B)/libconfig.a $(B)/libengine.a
PROGS := $(B)/maa $(if $(wildcard $(MAAD_MAIN)),$(B)/maad) $(if $(wildcard $(PLC_MAIN)),$(B)/maa-plc)
TEST_PROGS := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_SRC) $(HELPER_SRC)) \
         $(B)/tests/test_ring_tsan

# bench_cuda times the inspection pipeline for scripts/gpu-check.sh, bench_cpu
# the cpu backend for scripts/bench-cpu, bench_fmd the score against the
# literal formula (docs/scoring.md), bench_preprocess the resize of camera
# frames against the literal bin means (docs/engine.md), bench_publish a
# verdict's cost with its PNG mask (docs/protocol.md); not tests.
BENCH := $(B)/bench_cuda $(B)/bench_cpu $(B)/bench_fmd $(B)/bench_preprocess \
         $(B)/bench_publish

all: $(PROGS) $(TEST_PROGS) $(BENCH)

# The programs and C tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer, in build/san/ (tests/run.sh runs them after the
# plain ones).  Without CUDA: its runtime and ASan's shadow memory do not
# mix; the CUDA code is exercised by the plain build on a GPU.  Warnings are
# the plain build's to check: at -O1 gcc guesses string lengths differently.
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined -Wno-format-truncation
san:
	@$(MAKE) --no-print-directory B=$(B)/san CUDA=/nonexistent CFLAGS="$(SAN_FLAGS)" \
	    san-progs
san-progs: $(PROGS) $(filter-out $(B)/tests/test_ring_tsan,$(TEST_PROGS))

# The tests of the threaded modules under ThreadSanitizer, in build/tsan/:
# the worker (capture hand-off, batching, keep-alive), the publisher, the
# PLC bridge's bus thread, the reject archive's writer thread.  The ring has its own build (test_ring_tsan).
TSAN_TESTS := test_worker test_publish test_plc_bus test_archive
tsan:
	@$(MAKE) --no-print-directory B=$(B)/tsan CUDA=/nonexistent \
	    CFLAGS="-O1 -g -fsanitize=thread -Wno-format-truncation" \
	    $(addprefix $(B)/tsan/tests/,$(TSAN_TESTS))

# Quiet by default; make V=1 shows the commands.
Q := $(if $(V),,@)

# Objects depend on the flags they were built with: a change of CFLAGS (CUDA
# found or not, say) rebuilds them.
$(B)/.flags: FLAGS = $(CC) $(CFLAGS) $(NVFLAGS)
$(B)/fuzz/.flags: FLAGS = $(FUZZ_CC) $(FUZZ_CFLAGS)
$(B)/.flags $(B)/fuzz/.flags: FORCE
	@mkdir -p $(@D)
	@echo '$(FLAGS)' | cmp -s - $@ || echo '$(FLAGS)' > $@

$(B)/obj/%.o: %.c $(B)/.flags
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(B)/obj/%.cu.o: %.cu $(B)/.flags
	@mkdir -p $(@D)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVFLAGS) -c $< -o $@

$(B)/libengine.a: $(call obj,$(ENGINE_SRC) $(ENGINE_CU))
$(B)/libcamera.a: $(call obj,$(CAMERA_SRC))
$(B)/libconfig.a: $(call obj,$(CONFIG_SRC))
$(B)/libmaad.a:   $(call obj,$(DAEMON_SRC))
$(B)/libplc.a:    $(call obj,$(PLC_SRC))
$(B)/%.a:
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

# The C++ runtime is needed only when CUDA objects are in libengine.a.
LINK = $(Q)mkdir -p $(@D); $(if $(V),,echo "  LINK  $@";) $(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(if $(HAVE_CUDA),-lstdc++)

$(B)/maa: $(call obj,$(MAA_SRC)) $(LIBS)
	$(LINK)
$(B)/maad: $(call obj,$(MAAD_MAIN)) $(LIBS)
	$(LINK)
$(B)/maa-plc: $(call obj,$(PLC_MAIN)) $(LIBS)
	$(LINK)
$(B)/tests/%: $(B)/obj/tests/%.o $(LIBS)
	$(LINK)
$(B)/bench_cuda: $(B)/obj/tests/bench_cuda.o $(LIBS)
	$(LINK)
$(B)/bench_cpu: $(B)/obj/tests/bench_cpu.o $(LIBS)
	$(LINK)
$(B)/bench_fmd: $(B)/obj/tests/bench_fmd.o $(LIBS)
	$(LINK)
$(B)/bench_preprocess: $(B)/obj/tests/bench_preprocess.o $(LIBS)
	$(LINK)
$(B)/bench_publish: $(B)/obj/tests/bench_publish.o $(LIBS)
	$(LINK)

# The frame ring again under ThreadSanitizer (fewer items: TSan is slow).
$(B)/tests/test_ring_tsan: tests/test_ring.c daemon/ring.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=thread -DRING_ITEMS=300000u -o $@ $(filter %.c,$^)

# The libFuzzer harnesses, tests/fuzz/fuzz_*.c (docs/fuzzing.md), built
# with clang under AddressSanitizer and UndefinedBehaviorSanitizer into
# $(B)/fuzz/, from the sources compiled again with coverage instrumentation
# into $(B)/fuzz/obj/ (instrumented objects do not mix with gcc's): every
# module but the programs' mains, so that a harness may call into any of
# them, without CUDA.  clang's OpenMP (libomp-dev) stands in for gcc's.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -fopenmp -g -O1 \
                -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=all -MMD -MP -I. $(PKGS_CFLAGS)
FUZZ_SRC     := $(filter-out $(CUDA_SRC),$(ENGINE_SRC)) $(CAMERA_SRC) $(CONFIG_SRC) \
                $(DAEMON_SRC) $(PLC_SRC) $(filter-out $(MAA_MAIN),$(MAA_SRC))
FUZZ_PROGS   := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

$(B)/fuzz/obj/%.o: %.c $(B)/fuzz/.flags
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZCC $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(B)/fuzz/libmaad.a: $(patsubst %.c,$(B)/fuzz/obj/%.o,$(FUZZ_SRC))

$(B)/fuzz/fuzz_%: $(B)/fuzz/obj/tests/fuzz/fuzz_%.o $(B)/fuzz/libmaad.a
	@$(if $(Q),echo "  LINK  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(BASE_LIBS)

fuzz-build: $(FUZZ_PROGS)

# Each harness FUZZ_SECONDS over its seeds (FUZZ=pattern: those whose names
# match), and every kept crash input once; what they find stays in
# $(B)/fuzz/work/ for the next run.  The test does the same, shorter.
FUZZ_SECONDS ?= 60
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_WORK=$(B)/fuzz/work tests/e2e_fuzz.sh

# test and demo first install the Debian packages they need, then build in
# a fresh make so that pkg-config sees the new packages.
deps:
	@scripts/install-deps.sh

test: deps
	@$(MAKE) --no-print-directory all san tsan
	@PYTHON=$(PYTHON) tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

# Installs under PREFIX (default /usr/local); DESTDIR for staging.  The
# maad system user and /etc/maad/<camera>.yaml are the administrator's
# (docs/operations.md).
PREFIX ?= /usr/local
SCRIPTS := gen_synth.py synth_scene.py synth_png.py train.py export_model.py maa_net.py \
           maa_io.py plot_calibration.py plot_eval.py plot_compare.py plot_review.py plc-sim.py
# The docs show their pictures from img/ beside them, and the example
# configurations, which they link as ../config/ in the tree, beside them
# too; the units name the
# installed programs (ExecStart=) and documentation (Documentation=), all
# written for /usr/local in systemd/.
UNITS := maad@.service maa-plc.service
install: $(B)/maa $(B)/maad $(B)/maa-plc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/maad/scripts \
	    $(DESTDIR)$(PREFIX)/share/doc/maad/img $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/maad
	install -m 0755 $(B)/maa $(B)/maad $(B)/maa-plc $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(addprefix scripts/,$(SCRIPTS)) $(DESTDIR)$(PREFIX)/share/maad/scripts/
	install -m 0644 config/*.example.yaml config/maad-alerts.yml $(DESTDIR)$(PREFIX)/share/doc/maad/
	for d in docs/*.md; do \
	    sed 's|](\.\./config/|](|g' $$d > $(DESTDIR)$(PREFIX)/share/doc/maad/$${d#docs/} || exit 1; \
	done
	install -m 0644 docs/img/* $(DESTDIR)$(PREFIX)/share/doc/maad/img/
	for u in $(UNITS); do \
	    sed 's|/usr/local/|$(PREFIX)/|g' systemd/$$u > $(DESTDIR)/etc/systemd/system/$$u || exit 1; \
	done

clean:
	rm -rf $(B)

.PHONY: all san san-progs tsan deps test demo install clean fuzz fuzz-build FORCE
.SECONDARY:
-include $(shell find $(B) -name '*.d' 2>/dev/null)
