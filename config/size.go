package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes. In YAML, the environment and flags it is a
// whole number of bytes, optionally with a unit: B, kB/KB, MB, GB
// (powers of 1000) or KiB, MiB, GiB (powers of 1024), as in 16MiB.
// It implements pflag.Value, so a flag takes the same spellings.
type ByteSize int

var sizeUnits = []struct {
	suffix string
	n      int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// ParseByteSize parses s as a ByteSize. The error says what was expected.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > int64(^uint(0)>>1)/mult {
		return 0, fmt.Errorf("%q is not an integer number of bytes; want %s", s, want(byteSizeType))
	}
	return ByteSize(n * mult), nil
}

// String returns the size in the largest binary unit that divides it
// (16MiB), or in bytes.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		n      ByteSize
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && b%u.n == 0 {
			return strconv.FormatInt(int64(b/u.n), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set parses s into b (pflag.Value).
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Type names the flag's value type in --help (pflag.Value).
func (b *ByteSize) Type() string { return "size" }
