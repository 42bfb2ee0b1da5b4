//go:build !amd64 || purego

package forest

func walkRowsVec(nodes []node, pos []int32, depth int32, x []float32, nf int, noNaN bool) {
	walkRowsScalar(nodes, pos, depth, x, nf, noNaN)
}

func walkTreesVec(nodes []node, pos []int32, deeper []int32, row []float32, noNaN bool) {
	walkTreesScalar(nodes, pos, 0, deeper, row, noNaN)
}
