package codec

import "fmt"

// Kind classifies a decoding failure; proxy.StatusOf maps each kind to an
// HTTP status (and the gRPC front end to a gRPC code).
type Kind uint8

const (
	// BadRequest: the request does not fit the protocol or the model (400).
	BadRequest Kind = iota
	// TooLarge: the request asks for more than a configured limit, such as
	// limits.max_tensor_elements (413).
	TooLarge
)

// Error is a failure caused by the request's content. Msg names the field
// and what was expected; it is safe to send back to the client.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// badRequest returns a BadRequest error. Shapes ([]int64) are written as
// JSON arrays, [1,4], as clients wrote them.
func badRequest(format string, args ...any) *Error {
	for i, a := range args {
		if shape, ok := a.([]int64); ok {
			args[i] = fmtShape(shape)
		}
	}
	return &Error{Kind: BadRequest, Msg: fmt.Sprintf(format, args...)}
}
