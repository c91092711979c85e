# sluice build. `make demo` and `make test` are all a newcomer types on Debian 12:
# both install missing Debian packages first, then build and run.

CC       ?= cc
BUILD    ?= build
VERSION  := 0.1.0
PKGS     := libevent libevent_openssl libevent_pthreads jansson openssl libidn2 ldns libseccomp \
            libnftables libcap
# snprintf truncation into bounded buffers is intended, so its warning is off.
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wvla -Wno-unused-parameter
CFLAGS   ?= -O2 -g
override CFLAGS += -std=c17 -D_GNU_SOURCE -DSLUICE_VERSION='"$(VERSION)"' $(WARN) -Isrc \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
override LDLIBS += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

# gcc only (clang has no such warning and would reject the flag).
ifeq ($(findstring clang,$(CC)),)
WARN     += -Wno-format-truncation
endif

SRCS     := $(sort $(wildcard src/*/*.c))
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(filter-out $(BUILD)/src/core/main.o,$(OBJS))
UNIT_SRCS:= $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS:= $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS:= $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps build unit system fuzz-short test test-asan demo bench bench-mint bench-run clean format

all: build
build: $(BUILD)/sluice

deps:
	@scripts/install-deps

$(BUILD)/sluice: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJS) $(LDLIBS) -lcmocka

-include $(OBJS:.o=.d)

unit: $(UNIT_BINS)
	@scripts/run-unit $(UNIT_BINS)

system: build
	@scripts/run-system $(BUILD)/sluice

fuzz-short:
	@scripts/run-fuzz short

# The whole suite as CI runs it: packages, build, unit, system, sanitizers, fuzz.
test: deps
	$(MAKE) build
	$(MAKE) unit
	$(MAKE) system
	$(MAKE) test-asan
	$(MAKE) fuzz-short

# Unit and system tests again on an ASan+UBSan build.
test-asan: deps
	$(MAKE) BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" build unit
	SLUICE_ASAN=1 scripts/run-system build-asan/sluice

demo: deps
	$(MAKE) build
	@scripts/demo $(BUILD)/sluice

bench: deps build
	@bench/run

# Microbenchmark: minting a leaf certificate for a new host, signer round
# trip included (docs/TLS.md). `make bench-mint` (N hosts: BENCH_MINT_N).
$(BUILD)/bench/mint-bench: bench/mint-bench.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)

bench-mint: $(BUILD)/bench/mint-bench
	$(BUILD)/bench/mint-bench $(BENCH_MINT_N)

# Start-up overhead of `sluice run -- true` against `true` and bwrap (root).
bench-run: build
	SLUICE_BIN=$(BUILD)/sluice bench/run-startup.sh

format:
	clang-format -i $(SRCS) $(wildcard src/*/*.h)

clean:
	rm -rf build build-asan build-fuzz
