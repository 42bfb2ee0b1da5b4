package tensor

import (
	"reflect"
	"testing"
)

func TestStringsRoundTripConcatSplit(t *testing.T) {
	a := FromStrings("label", []int64{2, 2}, []string{"setosa", "", "virginica", "ünïcode"})
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 4 {
		t.Fatalf("Len = %d, want 4", a.Len())
	}
	b := FromStrings("label", []int64{1, 2}, []string{"x", "yz"})
	c, err := Concat("label", []*Tensor{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Strings(), []string{"setosa", "", "virginica", "ünïcode", "x", "yz"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Concat = %q, want %q", got, want)
	}
	parts, err := Split(c, []int{1, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"setosa", ""}, nil, {"virginica", "ünïcode", "x", "yz"}}
	for i, p := range parts {
		if err := p.Validate(); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got := p.Strings(); !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("part %d = %q, want %q", i, got, want[i])
		}
	}
}

func TestStringsValidateRejectsBadLayout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape []int64
		data  []byte
	}{
		{"short length", []int64{1}, []byte{1, 0}},
		{"length past end", []int64{1}, []byte{5, 0, 0, 0, 'a'}},
		{"too few elements", []int64{2}, AppendString(nil, []byte("a"))},
		{"too many elements", []int64{1}, AppendString(AppendString(nil, []byte("a")), nil)},
		{"huge length", []int64{1}, []byte{0xff, 0xff, 0xff, 0xff}},
	} {
		tt := &Tensor{Name: "s", DType: Bytes, Shape: tc.shape, Data: tc.data}
		if err := tt.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %v", tc.name, tc.data)
		}
	}
}
