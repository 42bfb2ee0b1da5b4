//go:build !linux

package idlethread

func lower() error  { return ErrUnsupported }
func lowered() bool { return false }
