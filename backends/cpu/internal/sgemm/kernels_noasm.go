//go:build purego || !amd64

package sgemm

// Available returns the kernel sets this build supports: the portable
// Go kernels only (the purego build tag, or an architecture without
// assembly kernels).
func Available() []*Kernels { return []*Kernels{&genericKernels} }

// FMAPeak returns 0: the portable kernels have no peak probe (see the
// amd64 version).
func (ks *Kernels) FMAPeak(iters int) int { return 0 }
