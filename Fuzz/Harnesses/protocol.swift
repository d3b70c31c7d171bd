// Fuzz target "protocol": SLMProtocol's FrameDecoder and message decoding.
//
// Input: byte 0 picks the decoder's maximum payload length; the rest is a byte stream as a
// socket would deliver it. Checks:
// - the stream cut into random chunks (some empty) decodes to exactly the same frames and
//   the same final error as the whole stream fed at once, and as one byte at a time;
// - the partial-frame buffer never exceeds one header plus the maximum payload;
// - after a framing error `next()` keeps rethrowing that same error;
// - re-encoding the decoded frames gives back the stream's first bytes exactly, and each
//   re-encoded frame decodes to itself;
// - every frame payload (and the raw stream as a payload) decoded as a Request or a
//   ServerMessage either throws a ProtocolError or round-trips: payload() decodes to an
//   equal value, and re-serialising that gives the same bytes.
@testable import SLMProtocol

private let maxPayloads = [0, 1, 12, 255, 4096, FrameHeader.defaultMaxPayloadLength]

private struct Outcome: Equatable {
    var frames: [Frame] = []
    var error: ProtocolError? = nil
}

/// Feeds `chunks`, draining after each, then finishes and drains.
private func decode(_ chunks: [ArraySlice<UInt8>], maxPayload: Int) -> Outcome {
    var d = FrameDecoder(maxPayloadLength: maxPayload)
    var out = Outcome()
    func drain() {
        while true {
            do {
                guard let f = try d.next() else { return }
                fuzzCheck(out.error == nil, "a frame was delivered after the framing error \(out.error!)")
                fuzzCheck(f.payload.count <= maxPayload, "frame payload \(f.payload.count) > max \(maxPayload)")
                out.frames.append(f)
            } catch {
                if let e = out.error {
                    fuzzCheck(e == error, "next() threw \(error) after \(e)")
                } else {
                    out.error = error
                }
                fuzzCheck(error.isFatal, "framing error \(error) is not fatal")
                // The error must be sticky: ask once more.
                do {
                    let again = try d.next()
                    fuzzFail("next() returned \(String(describing: again)) after throwing \(error)")
                } catch let e2 {
                    fuzzCheck(e2 == error, "next() threw \(e2), then \(error)")
                }
                return
            }
        }
    }
    for c in chunks {
        d.feed(c)
        fuzzCheck(d.partialByteCount <= FrameHeader.size + maxPayload,
                  "decoder holds \(d.partialByteCount) partial bytes, max payload \(maxPayload)")
        drain()
    }
    d.finish()
    drain()
    switch d.state {
    case .finished: fuzzCheck(out.error == nil, "finished state with error \(out.error!)")
    case .failed(let e): fuzzCheck(out.error == e, "failed(\(e)) but next() threw \(String(describing: out.error))")
    default: fuzzFail("state \(d.state) after finish()")
    }
    return out
}

private func checkRequest(_ payload: some Collection<UInt8>) {
    let req: Request
    do { req = try Request(payload: payload) } catch {
        _ = error.description
        _ = error.errorMessage.payload()
        return
    }
    let bytes = req.payload()
    let again: Request
    do { again = try Request(payload: bytes) } catch {
        fuzzFail("Request re-encoding does not decode: \(error)\n input: \(fuzzShow(payload))\n re-encoded: \(fuzzShow(bytes))")
    }
    fuzzCheck(again == req, "Request round trip differs:\n \(req)\n \(again)\n re-encoded: \(fuzzShow(bytes))")
    let bytes2 = again.payload()
    fuzzCheck(bytes2 == bytes, "Request serialisation not stable:\n \(fuzzShow(bytes))\n \(fuzzShow(bytes2))")
    let viaFrame = try? Request(frame: req.frame())
    fuzzCheck(viaFrame == req, "Request(frame: req.frame()) differs")
}

private func checkServerMessage(_ frame: Frame) {
    let msg: ServerMessage
    do { msg = try ServerMessage(frame: frame) } catch {
        _ = error.description
        return
    }
    let f2 = msg.frame()
    fuzzCheck(f2.type == frame.type, "ServerMessage re-encoded as frame type \(f2.type), decoded from \(frame.type)")
    let again: ServerMessage
    do { again = try ServerMessage(frame: f2) } catch {
        fuzzFail("ServerMessage re-encoding does not decode: \(error)\n input: \(fuzzShow(frame.payload))\n re-encoded: \(fuzzShow(f2.payload))")
    }
    fuzzCheck(again == msg, "ServerMessage round trip differs:\n \(msg)\n \(again)")
    fuzzCheck(again.frame().payload == f2.payload, "ServerMessage serialisation not stable")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProtocol(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 1, let data else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let maxPayload = maxPayloads[Int(input[0]) % maxPayloads.count]
    let stream = input[1...]

    // Reference: the whole stream in one feed.
    let whole = decode([stream], maxPayload: maxPayload)

    // Random chunking, including empty chunks.
    var rng = FuzzRNG(hashing: input)
    var chunks: [ArraySlice<UInt8>] = []
    var i = stream.startIndex
    while i < stream.endIndex {
        let n = rng.chance(1, in: 8) ? 0 : 1 + rng.below(1 << (1 + rng.below(12)))
        let end = min(stream.endIndex, i + n)
        chunks.append(stream[i..<end])
        i = end
    }
    if rng.chance(1, in: 2) { chunks.append(stream[stream.endIndex...]) }
    let chunked = decode(chunks, maxPayload: maxPayload)
    fuzzCheck(chunked == whole, "chunking changed the result: \(chunked.frames.count) frames/\(String(describing: chunked.error)) vs \(whole.frames.count)/\(String(describing: whole.error))")

    if stream.count <= 4096 {
        let bytewise = decode(stream.indices.map { stream[$0...$0] }, maxPayload: maxPayload)
        fuzzCheck(bytewise == whole, "byte-at-a-time feeding changed the result")
    }

    // Re-encoding gives back the stream prefix the frames came from.
    var encoded: [UInt8] = []
    for f in whole.frames { f.encode(into: &encoded) }
    fuzzCheck(encoded.count <= stream.count && stream.prefix(encoded.count).elementsEqual(encoded),
              "re-encoded frames are not the stream prefix")
    for f in whole.frames {
        let one = decode([f.encode()[...]], maxPayload: maxPayload)
        fuzzCheck(one.error == nil && one.frames == [f], "a re-encoded frame does not decode to itself")
        if f.type == .request { checkRequest(f.payload) } else { checkServerMessage(f) }
    }

    // The raw stream as a payload too, so the JSON decoding is fuzzed without framing.
    checkRequest(stream)
    checkServerMessage(Frame(type: FrameType(rawValue: 2 + input[0] % 3), payload: Array(stream)))
    return 0
}
