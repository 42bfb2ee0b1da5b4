package drift_test

import (
	"fmt"

	"github.com/coalesce-ml/coalesce/drift"
)

// A profile's bins come from reference data; PSI and the Jensen–Shannon
// distance compare a window's bin counts with its shares.
func Example() {
	ref := make([]float64, 100)
	for i := range ref {
		ref[i] = float64(i)
	}
	f, err := drift.BuildFeature(drift.Column{Name: "age", Tensor: "input", Column: 0, Values: ref}, 4, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println("edges", f.Edges, "shares", f.Ref)

	same := []uint64{25, 25, 25, 25, 0}
	shifted := []uint64{5, 15, 30, 50, 0}
	fmt.Printf("PSI same %.2f shifted %.2f\n", drift.PSI(same, f.Ref), drift.PSI(shifted, f.Ref))
	fmt.Printf("JS distance shifted %.2f\n", drift.JSDistance(shifted, f.Ref))
	// Output:
	// edges [24 49 74] shares [0.25 0.25 0.25 0.25 0]
	// PSI same 0.00 shifted 0.56
	// JS distance shifted 0.26
}
