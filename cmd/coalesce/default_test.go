package main

import (
	"strings"
	"testing"
)

// TestAbsentDefaultModelFallsBack: a models.default that the repository
// does not hold (a user's own repository, with the shipped configuration
// naming digits-mlp) must not stop start-up: POST /predict serves the
// first model by name, and the log says so.
func TestAbsentDefaultModelFallsBack(t *testing.T) {
	s := startServer(t, "--models.default", "nope")
	st, body, _ := httpDo(s.addr, "GET", "/v2/models/cancer-xgb/ready", nil, nil)
	if st != 200 {
		t.Fatalf("GET ready = %d %s; want 200", st, body)
	}
	log := s.stdout.String()
	if !strings.Contains(log, "models.default is not in the model repository") || !strings.Contains(log, `"serving":"cancer-xgb"`) {
		t.Errorf("log = %s; want a warning that /predict serves cancer-xgb instead of nope", log)
	}
	// cancer-xgb takes 30 features.
	features := strings.Repeat("0.5,", 29) + "0.5"
	st, body, _ = httpDo(s.addr, "POST", "/predict", []byte(`{"features":[`+features+`]}`), nil)
	if st != 200 || !strings.Contains(string(body), `"prediction"`) {
		t.Errorf("POST /predict = %d %s; want 200 from the first model", st, body)
	}
}
