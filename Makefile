# Harrier: `make` builds build/harrier; `make run` and `make test` are the README's two
# commands (each installs what is missing first). See README.md, "Working on harrier".

CC ?= cc
BUILD ?= build
PKGS := libuv libcurl openssl yaml-0.1 jansson libarchive libmicrohttpd libgit2
LAYERS := lib workflow sandbox protocol actions runner
PYTHON := /usr/bin/python3

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
OPT ?= -O2
CFLAGS_ALL = -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(SAN_FLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lpthread -lm $(LDLIBS)
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

LIB_SRCS := $(filter-out runner/main.c,$(foreach d,$(LAYERS),$(wildcard $(d)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
CONF_SRCS := $(wildcard tests/conformance/*.c)
CONF_BINS := $(CONF_SRCS:tests/conformance/%.c=$(BUILD)/conformance/%)
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRCS:tests/bench/%.c=$(BUILD)/bench/%)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(BUILD)/helpers/%)
DEPFILES := $(LIB_OBJS:.o=.d) $(BUILD)/obj/runner/main.d

.PHONY: all deps run test asan lint conformance bench fuzz clean test-binaries check-test
all: $(BUILD)/harrier

-include $(DEPFILES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libharrier.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/harrier: $(BUILD)/obj/runner/main.o $(BUILD)/libharrier.a
	@echo "  LINK    $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libharrier.a
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -o $@ $< $(BUILD)/libharrier.a $(LDLIBS_ALL) -lcriterion

$(BUILD)/conformance/%: tests/conformance/%.c $(BUILD)/libharrier.a
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -o $@ $< $(BUILD)/libharrier.a $(LDLIBS_ALL)

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libharrier.a
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -o $@ $< $(BUILD)/libharrier.a $(LDLIBS_ALL)

$(BUILD)/helpers/%: tests/helpers/%.c $(BUILD)/libharrier.a
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libharrier.a $(LDLIBS_ALL)

-include $(UNIT_BINS:=.d) $(CONF_BINS:=.d) $(BENCH_BINS:=.d)

test-binaries: $(BUILD)/harrier $(UNIT_BINS) $(CONF_BINS) $(HELPER_BINS)

deps:
	@scripts/deps

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-example $(BUILD)/harrier

# Every test target prints "N passed, N failed"; tests/run prints the overall line last.
test: deps
	@$(MAKE) --no-print-directory test-binaries
	@$(PYTHON) tests/run --build $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 OPT=-O1 test-binaries
	@$(PYTHON) tests/run --build build/asan --sanitize

conformance: $(CONF_BINS)
	@$(PYTHON) tests/run --build $(BUILD) --only conformance

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@$(PYTHON) tests/bench/run --build $(BUILD)

fuzz:
	@scripts/fuzz

lint:
	@scripts/lint

clean:
	rm -rf build
