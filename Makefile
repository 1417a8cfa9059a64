# The two commands a newcomer types. Everything else is CMake under build/.
#   make demo   install missing Debian packages, build, provision and run a 3-site federation
#   make test   install missing Debian packages, build, run every test (ctest)
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build demo test bench clean format check-asan check-tsan fuzz prometheus-check \
        check-exhaustive check-chaos check-disk-faults check-network-faults check-certificates soak \
        package check-package
EXHAUSTIVE_SITES ?= 5
FUZZ_SECONDS ?= 60
CHAOS_SEED ?= 16

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD_DIR)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	@scripts/bench.sh $(BUILD_DIR)

# The torch-free unit tests under AddressSanitizer + UndefinedBehaviorSanitizer, or
# ThreadSanitizer, each in its own build folder (build-asan, build-tsan).
check-asan:
	@scripts/check-sanitizers.sh asan

check-tsan:
	@scripts/check-sanitizers.sh tsan

# Every SecAgg+ dropout pattern of every federation of 3..EXHAUSTIVE_SITES sites, one shard
# per core (scripts/exhaustive.sh).
check-exhaustive: build
	@JOBS=$(JOBS) scripts/exhaustive.sh $(EXHAUSTIVE_SITES) $(BUILD_DIR)

# The coordinator SIGKILLed 20 times at seeded moments, and a site at each stage, in real
# federations: every round once, every record verified and reconciled (scripts/chaos.sh).
check-chaos: build
	cmake --build $(BUILD_DIR) --target chaos_test
	@scripts/chaos.sh $(CHAOS_SEED) $(BUILD_DIR)

# A coordinator's and a site's state folder on a small tmpfs that fills up mid-federation (root
# only; says "skipped" where mounting is not allowed): each stops clearly and resumes.
check-disk-faults: build
	@scripts/disk-faults.sh $(BUILD_DIR)

# Real federations through the fault-injecting TCP proxy (latency, bandwidth limits, resets
# mid-stream, stalls past deadlines, half-open and silent connections): the slice of make test
# that covers them, run alone.
check-network-faults: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900 \
	  -R '^(NetworkFaultsTest|FaultProxyTest)[.]'

# Certificates that expire during a run (site's and coordinator's, on real processes), revoked
# ones, and clocks skewed by minutes: the slice of make test that covers them, run alone.
check-certificates: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900 \
	  -R '^(CertLifetimeTest|RevocationTest|RevocationListTest|AuditCertificateExpiryTest|ClockSkewTest|UploadDeadlineSkewTest|ExpiringCoordinatorDoctorTest)[.]'

# 100 virtual sites over loopback gRPC with mutual TLS, 1,000 secure rounds then 200 plaintext:
# memory, descriptors and threads must stay flat (scripts/soak.sh; results in soak-results/).
soak: build
	@scripts/soak.sh $(BUILD_DIR)

# A 3-site federation scraped every second by Debian's Prometheus server (installed on demand):
# PASS when Prometheus shows three sites connected and a rising round counter.
prometheus-check: build
	@scripts/prometheus-check.sh $(BUILD_DIR)

# Every libFuzzer target of fuzz/ for FUZZ_SECONDS over its corpus (clang, build-fuzz), or until
# FUZZ_RUNS executions when given; FUZZ_TARGETS picks targets (scripts/fuzz.sh).
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# Debian packages hansa-coordinator, hansa-client and hansa-tools in build-package/packages/
# (their own build folder, CUDA off: Debian's LibTorch is CPU-only).
package: deps
	@scripts/package.sh

# Installs those packages with apt on a fresh Debian 12 root without a compiler (mmdebstrap) and
# runs the 3-site demo there. Root only; downloads from the Debian mirror, so not in make test.
check-package: package
	@scripts/package-check.sh

format:
	@git ls-files '*.h' '*.cc' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
