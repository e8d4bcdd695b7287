// Copyright 2026 The liteseg_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

// LD_PRELOAD library: the process sees an AVX2-only CPU (AVX2 + FMA; no AVX-512, AVX-VNNI,
// AMX), like an AMD Zen 3, while its code runs natively.
//
// ONNX Runtime (MLAS), oneDNN (PyTorch, OpenVINO), PyTorch's cpuinfo and numpy pick their
// kernels from the CPUID instruction. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, the
// `cpuid_fault` flag in /proc/cpuinfo) turns every CPUID into a SIGSEGV; the handler runs the
// real CPUID and clears the feature bits before returning to the program. The setting survives
// clone() (every thread), execve() resets it and the preload sets it again.

#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

// Leaf 7 subleaf 0.
static const unsigned LEAF7_EBX = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) |
                                  BIT(30) | BIT(31);  // avx512 f dq ifma pf er cd bw vl
static const unsigned LEAF7_ECX = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
// avx512 vbmi vbmi2 vnni bitalg vpopcntdq
static const unsigned LEAF7_EDX = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) |
                                  BIT(25);
// avx512 4vnniw 4fmaps vp2intersect, amx_bf16, avx512_fp16, amx_tile, amx_int8
// Leaf 7 subleaf 1.
static const unsigned LEAF7_1_EAX = BIT(4) | BIT(5) | BIT(21) | BIT(23);
// avx_vnni, avx512_bf16, amx_fp16, avx_ifma

static int set_cpuid_faulting(int on) {
  return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1);
}

static void on_segv(int signo, siginfo_t *info, void *context) {
  (void)signo;
  (void)info;
  ucontext_t *uc = (ucontext_t *)context;
  greg_t *regs = uc->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
  if (ip[0] != 0x0f || ip[1] != 0xa2) {  // not CPUID: a real fault, die as without us
    signal(SIGSEGV, SIG_DFL);
    return;
  }
  unsigned leaf = (unsigned)regs[REG_RAX], subleaf = (unsigned)regs[REG_RCX];
  unsigned a, b, c, d;
  set_cpuid_faulting(0);
  __cpuid_count(leaf, subleaf, a, b, c, d);
  set_cpuid_faulting(1);
  if (leaf == 7 && subleaf == 0) {
    b &= ~LEAF7_EBX;
    c &= ~LEAF7_ECX;
    d &= ~LEAF7_EDX;
  } else if (leaf == 7 && subleaf == 1) {
    a &= ~LEAF7_1_EAX;
  }
  regs[REG_RAX] = a;
  regs[REG_RBX] = b;
  regs[REG_RCX] = c;
  regs[REG_RDX] = d;
  regs[REG_RIP] += 2;
}

__attribute__((constructor)) static void mask_avx512(void) {
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_sigaction = on_segv;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid_faulting(1) != 0) {
    fprintf(stderr, "avx2_only: this CPU or kernel has no CPUID faulting (cpuid_fault flag); "
                    "cannot present an AVX2-only CPU\n");
    _exit(70);
  }
}
