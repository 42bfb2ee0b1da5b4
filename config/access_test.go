package config

import (
	"strings"
	"testing"
)

// TestAccessSample: log.access_sample takes a share from 0 to 1, from the
// file, the environment or a flag, and names itself when out of range.
func TestAccessSample(t *testing.T) {
	_, load := setup(t)
	ok := func(yml string, env []string, args []string, want float64) {
		t.Helper()
		c, err := load(yml, env, args...)
		if err != nil || c.Log.AccessSample != want {
			t.Errorf("load(%q, %v, %v) = %v, %v; want %v", yml, env, args, c, err, want)
		}
	}
	ok("", nil, nil, 0)
	ok("log:\n  access_sample: 0.25\n", nil, nil, 0.25)
	ok("", []string{"COALESCE_LOG_ACCESS_SAMPLE=1"}, nil, 1)
	ok("", nil, []string{"--log.access_sample", "0.01"}, 0.01)
	for _, v := range []string{"1.5", "-0.1", "NaN"} {
		_, err := load("", nil, "--log.access_sample", v)
		if err == nil || !strings.Contains(err.Error(), "log.access_sample") {
			t.Errorf("--log.access_sample %s: error %v; want one naming log.access_sample", v, err)
		}
	}
}
