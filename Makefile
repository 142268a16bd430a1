# mega.c build. `make` builds the trainers, tests and kernel benchmarks for
# sm_90a (H100/H200: the Hopper-only instructions, wgmma, of the attention kernels);
# `make test` builds and runs the tests (GPU tests and the dev/cuda checks only where a GPU
# is present).
# Override GPU_ARCH=90 (no wgmma), 80 etc. for other GPUs: the portable mma.sync path.
CXX        ?= g++
NVCC       ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
GPU_ARCH   ?= 90a
PRECISION  ?= BF16
CXXFLAGS   ?= -O2 -std=c++17 -Wall -Wno-unused-function -Wno-unused-result
NVCC_ARCH  := -gencode=arch=compute_$(GPU_ARCH),code=sm_$(GPU_ARCH)
NVCC_FLAGS ?= -O3 -std=c++17 $(NVCC_ARCH) -lineinfo -Xcompiler -Wall,-Wno-unused-function,-Wno-unused-result
ifeq ($(GPU_ARCH),90a)
  NVCC_FLAGS += -DMEGA_SM90A
endif
NVCC_LIBS  := -lcublasLt -lcublas
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))

# NCCL and MPI are optional: build with them where they are found.
NCCL_INC := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/local/include/nccl.h /usr/include/nccl.h))
ifneq ($(NCCL_INC),)
  NVCC_FLAGS += -DMEGA_NCCL
  NVCC_LIBS  += -lnccl
endif
MPI_INC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h /usr/include/mpi.h /usr/local/include/mpi.h /usr/lib/x86_64-linux-gnu/mpich/include/mpi.h))
ifneq ($(MPI_INC),)
  NVCC_FLAGS += -DMEGA_MPI -I$(dir $(MPI_INC))
  NVCC_LIBS  += -L/usr/lib/x86_64-linux-gnu/openmpi/lib -lmpi
endif

# CUPTI (the CUDA toolkit's profiling library) for the trainers' --profile-step, where the
# toolkit has it (its headers and library sit in include/ and lib64/, or under extras/CUPTI);
# the rpath lets the trainers find it at run time. Without it --profile-step is refused.
CUPTI_H   := $(firstword $(wildcard $(CUDA_HOME)/include/cupti.h $(CUDA_HOME)/extras/CUPTI/include/cupti.h $(CUDA_HOME)/targets/*/include/cupti.h))
CUPTI_SO  := $(firstword $(wildcard $(CUDA_HOME)/lib64/libcupti.so $(CUDA_HOME)/lib/libcupti.so $(CUDA_HOME)/extras/CUPTI/lib64/libcupti.so $(CUDA_HOME)/targets/*/lib/libcupti.so))
ifneq ($(and $(CUPTI_H),$(CUPTI_SO)),)
  CUPTI_FLAGS := -DMEGA_CUPTI -I$(dir $(CUPTI_H))
  CUPTI_LIBS  := -L$(dir $(CUPTI_SO)) -lcupti -Xlinker -rpath -Xlinker $(patsubst %/,%,$(dir $(CUPTI_SO)))
endif

ifeq ($(PRECISION),FP32)
  NVCC_FLAGS += -DENABLE_FP32
endif

LLMC_HEADERS := $(wildcard llmc/*/*.h llmc/*/*.cuh)
CUDA_BENCHES := $(patsubst %.cu,%,$(wildcard dev/cuda/*.cu))
CPU_TESTS    := test/test_rand test/test_profile test/test_gpt_cpu test/test_dit_cpu test/test_tokenizer test/test_dataloader test/test_checkpoint test/test_latent_data test/test_moving_shapes test/test_gif test/test_rendezvous test/test_zero test/test_safetensors test/test_megatron_data test/test_hf test/test_hf_tokenizer test/test_convert_mugv test/test_token_data test/test_memory_plan test/test_ckpt_fallback test/test_ckpt_background test/test_sft_data test/test_context_parallel
GPU_TESTS    := test/test_gpt test/test_gpt_fp32 test/test_dit test/test_dit_fp32

.PHONY: all test cpu gpu benches clean
ALL := train_gpt train_dit train_gpt_fp32 train_dit_fp32 dev/cpu/gpt dev/cpu/dit build_data moving_shapes $(CPU_TESTS) $(GPU_TESTS) $(CUDA_BENCHES)
all: $(ALL)
cpu: dev/cpu/gpt dev/cpu/dit build_data moving_shapes $(CPU_TESTS)
gpu: train_gpt train_dit $(GPU_TESTS)
benches: $(CUDA_BENCHES)

train_gpt: train_gpt.cu $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(CUPTI_FLAGS) $< -o $@ $(NVCC_LIBS) $(CUPTI_LIBS)

# the GPU test includes train_gpt.cu (its main() disabled) and checks it against test/data
test/test_gpt: test/test_gpt.cu test/gpt_reference.h train_gpt.cu $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $< -o $@ $(NVCC_LIBS)
test/test_gpt_fp32: test/test_gpt.cu test/gpt_reference.h train_gpt.cu $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) -DENABLE_FP32 $< -o $@ $(NVCC_LIBS)

train_dit: train_dit.cu $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(CUPTI_FLAGS) $< -o $@ $(NVCC_LIBS) $(CUPTI_LIBS)

# the all-fp32 trainers (what `make PRECISION=FP32 train_gpt` builds), under their own names so
# that `make` (and CI) keeps them compiling
train_gpt_fp32: train_gpt.cu $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(CUPTI_FLAGS) -DENABLE_FP32 $< -o $@ $(NVCC_LIBS) $(CUPTI_LIBS)
train_dit_fp32: train_dit.cu $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $(CUPTI_FLAGS) -DENABLE_FP32 $< -o $@ $(NVCC_LIBS) $(CUPTI_LIBS)

# the GPU test includes train_dit.cu (its main() disabled) and checks it against test/data/dit_tiny.mgt;
# it reads the file with dev/cpu/dit.cpp's readers (built without OpenMP: its pragmas are not used)
test/test_dit: test/test_dit.cu train_dit.cu dev/cpu/dit.cpp $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) -Xcompiler -Wno-unknown-pragmas $< -o $@ $(NVCC_LIBS)
test/test_dit_fp32: test/test_dit.cu train_dit.cu dev/cpu/dit.cpp $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) -Xcompiler -Wno-unknown-pragmas -DENABLE_FP32 $< -o $@ $(NVCC_LIBS)

dev/cuda/%: dev/cuda/%.cu $(wildcard dev/cuda/*.h dev/cuda/*.cuh) $(LLMC_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $< -o $@ $(NVCC_LIBS)

dev/cpu/gpt: dev/cpu/gpt.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) -fopenmp $< -o $@
dev/cpu/dit: dev/cpu/dit.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) -fopenmp $< -o $@

build_data: dev/data/build_data.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) $< -o $@
moving_shapes: dev/data/moving_shapes.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) $< -o $@

test/test_gpt_cpu: test/test_gpt_cpu.cpp test/gpt_reference.h dev/cpu/gpt.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) -fopenmp $< -o $@
test/test_hf: test/test_hf.cpp dev/cpu/gpt.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) -fopenmp $< -o $@
test/test_dit_cpu: test/test_dit_cpu.cpp dev/cpu/dit.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) -fopenmp $< -o $@
test/test_convert_mugv: test/test_convert_mugv.cpp dev/cpu/dit.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) -fopenmp $< -o $@
test/test_context_parallel: test/test_context_parallel.cpp dev/cpu/ring_attention.h $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) $< -o $@
test/test_%: test/test_%.cpp $(LLMC_HEADERS)
	$(CXX) $(CXXFLAGS) $< -o $@

# on a GPU machine run_tests.sh also builds and runs the GPU tests and every dev/cuda check
test: train_gpt train_dit build_data moving_shapes dev/cpu/gpt $(CPU_TESTS)
	@bash test/run_tests.sh

# everything `all` builds, the tests' scratch folder and the fuzzers' binaries (fuzz/out keeps
# its corpus, which later runs start from)
clean:
	rm -f $(ALL)
	rm -rf test/tmp fuzz/out/bin
