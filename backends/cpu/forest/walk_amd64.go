//go:build amd64 && !purego

package forest

import "golang.org/x/sys/cpu"

// walk16AVX512 moves 16 walks down depth levels at once with AVX-512
// gathers: lane j starts at node pos[j] and reads its features at
// x[xoff[j]+feature]; pos is updated in place. Leaves stay put (step 0).
// Nodes must be the 16-byte node layout; no lane may reach past nodes or
// x (Build and the callers guarantee it).
//
//go:noescape
func walk16AVX512(nodes *node, x *float32, pos *int32, xoff *int32, depth int)

var hasAVX512 = cpu.X86.HasAVX512F

// walkRowsVec walks the rows of x (nf features each) from pos down depth
// levels, 16 rows per call of the AVX-512 kernel; the last rows (fewer
// than 16), and every row on CPUs without AVX-512, take the scalar walk.
func walkRowsVec(nodes []node, pos []int32, depth int32, x []float32, nf int, noNaN bool) {
	r := 0
	if hasAVX512 && depth > 0 && len(pos) >= 16 {
		var xoff [16]int32
		for j := range xoff {
			xoff[j] = int32(j * nf)
		}
		for ; r+16 <= len(pos); r += 16 {
			walk16AVX512(&nodes[0], &x[r*nf], &pos[r], &xoff[0], int(depth))
		}
	}
	walkRowsScalar(nodes, pos[r:], depth, x[r*nf:], nf, noNaN)
}

// walkTreesVec walks one row through many trees: pos holds the trees'
// roots deepest first, deeper[d] how many trees are deeper than d. Groups
// of 16 trees take the AVX-512 kernel, with the depth of the group's
// first (deepest) tree; the rest walk level by level.
func walkTreesVec(nodes []node, pos []int32, deeper []int32, row []float32, noNaN bool) {
	j := 0
	if hasAVX512 && len(deeper) > 0 {
		var xoff [16]int32
		for ; j+16 <= int(deeper[0]); j += 16 {
			d := 0
			for d < len(deeper) && int(deeper[d]) > j {
				d++
			}
			walk16AVX512(&nodes[0], &row[0], &pos[j], &xoff[0], d)
		}
	}
	walkTreesScalar(nodes, pos, j, deeper, row, noNaN)
}
