// Package h2 holds what Coalesce's two HTTP/2 endpoints share: the gRPC
// port's server (grpcserver) and the load tool's lean gRPC client
// (bench/grpcload), both on golang.org/x/net/http2's Framer.
package h2

import "golang.org/x/net/http2"

// WriteBlock writes an HPACK-encoded header block on stream id as a
// HEADERS frame, then CONTINUATION frames for what does not fit in
// maxFrame bytes (the peer's SETTINGS_MAX_FRAME_SIZE); end sets
// END_STREAM on the HEADERS frame.
func WriteBlock(fr *http2.Framer, id uint32, end bool, block []byte, maxFrame int) error {
	k := min(len(block), maxFrame)
	err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:k], EndStream: end, EndHeaders: k == len(block)})
	for block = block[k:]; err == nil && len(block) > 0; block = block[k:] {
		k = min(len(block), maxFrame)
		err = fr.WriteContinuation(id, k == len(block), block[:k])
	}
	return err
}

// FrameLen is the length of the frame whose 9-byte header hdr begins
// with: the header and its payload.
func FrameLen(hdr []byte) int {
	return 9 + (int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2]))
}
