//go:build purego || !amd64

package cpu

// kernelSets returns the kernel sets this build supports: the portable
// Go kernels only (the purego build tag, or an architecture without
// assembly kernels).
func kernelSets() []*kernelSet { return []*kernelSet{&genericKernels} }
