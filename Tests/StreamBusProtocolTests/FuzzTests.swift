import Testing

@testable import StreamBusProtocol

/// How fuzz inputs ended, so a test can check that it explored both outcomes.
private struct Outcomes {
  var decoded = 0
  var errorKinds: Set<String> = []
}

/// Random and mutated inputs must only ever produce the documented errors, and anything that
/// decodes must re-encode to the same bytes.
@Suite struct FuzzTests {
  static let seed: UInt64 = 0x5EED_2026

  private func checkRequest(_ payload: [UInt8], context: String, _ outcomes: inout Outcomes) {
    do {
      let (header, request) = try Request.decode(payload: payload)
      #expect(request.encodePayload(header: header) == payload, "\(context)")
      outcomes.decoded += 1
    } catch let error as ProtocolError {
      outcomes.errorKinds.insert("header \(error.code)")
    } catch let error as RequestBodyError {
      outcomes.errorKinds.insert("body \(error.underlying.code)")
    } catch {
      Issue.record("\(context): unexpected error type \(error)")
    }
  }

  private func checkResponse(
    _ payload: [UInt8], apiKey: ApiKey, context: String, _ outcomes: inout Outcomes
  ) {
    do {
      let (header, response) = try Response.decode(apiKey: apiKey, version: 0, payload: payload)
      if let response {
        #expect(response.encodePayload(header: header, version: 0) == payload, "\(context)")
      } else {
        #expect(header.errorCode != .none)
        #expect(header.encodeErrorOnly() == payload, "\(context)")
      }
      outcomes.decoded += 1
    } catch let error as ProtocolError {
      outcomes.errorKinds.insert("\(error.code)")
    } catch {
      Issue.record("\(context): unexpected error type \(error)")
    }
  }

  @Test func randomBytesNeverCrash() {
    var generator = SplitMix64(seed: Self.seed)
    let apiKeys = ApiKey.supported.keys.sorted { $0.rawValue < $1.rawValue }
    var requestOutcomes = Outcomes()
    var responseOutcomes = Outcomes()
    for iteration in 0..<20_000 {
      let length = Int.random(in: 0..<160, using: &generator)
      var payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
      // Steer half the inputs past the header so the body decoders see random bytes too.
      if iteration % 2 == 0 && payload.count >= 10 {
        let apiKey = apiKeys[iteration / 2 % apiKeys.count]
        payload[0] = UInt8(truncatingIfNeeded: apiKey.rawValue >> 8)
        payload[1] = UInt8(truncatingIfNeeded: apiKey.rawValue)
        payload[2] = 0
        payload[3] = 0
        payload[8] = 0xFF
        payload[9] = 0xFF
      }
      let context = "seed \(Self.seed) iteration \(iteration)"
      checkRequest(payload, context: context, &requestOutcomes)
      checkResponse(
        payload, apiKey: apiKeys[iteration % apiKeys.count], context: context, &responseOutcomes)
    }
    for kind in ["header truncated", "body truncated", "body countTooLarge", "body negativeCount"] {
      #expect(requestOutcomes.errorKinds.contains(kind), "\(kind)")
    }
    #expect(responseOutcomes.errorKinds.isSuperset(of: ["truncated", "negativeCount"]))
  }

  @Test func mutatedValidEncodingsNeverCrash() {
    let seed = Self.seed ^ 0xABCD
    var generator = SplitMix64(seed: seed)
    let requests = Fixtures.smallRequests.map { request in
      request.1.encodePayload(header: Fixtures.header(for: request.1))
    }
    let responses = Fixtures.smallResponses.map { response in
      (
        response.1.apiKey,
        response.1.encodePayload(header: ResponseHeader(correlationId: 2), version: 0)
      )
    }
    var requestOutcomes = Outcomes()
    var responseOutcomes = Outcomes()
    for iteration in 0..<10_000 {
      let context = "seed \(seed) iteration \(iteration)"
      var request = requests[iteration % requests.count]
      mutate(&request, using: &generator)
      checkRequest(request, context: context, &requestOutcomes)
      var (apiKey, response) = responses[iteration % responses.count]
      mutate(&response, using: &generator)
      checkResponse(response, apiKey: apiKey, context: context, &responseOutcomes)
    }
    // Some mutations leave a valid message (a changed integer), which must then re-encode
    // byte for byte; the rest must be caught by the bounds checks.
    #expect(requestOutcomes.decoded > 500)
    #expect(responseOutcomes.decoded > 500)
    for kind in ["truncated", "countTooLarge", "negativeCount", "trailingBytes", "invalidLength"] {
      #expect(requestOutcomes.errorKinds.contains("body \(kind)"), "\(kind)")
      #expect(responseOutcomes.errorKinds.contains(kind), "\(kind)")
    }
  }

  /// Flips bits, writes boundary values over 1 to 4 bytes, or cuts/extends the tail.
  private func mutate(_ bytes: inout [UInt8], using generator: inout SplitMix64) {
    let edits = Int.random(in: 1...3, using: &generator)
    for _ in 0..<edits {
      guard !bytes.isEmpty else { return }
      let position = Int.random(in: 0..<bytes.count, using: &generator)
      switch Int.random(in: 0..<5, using: &generator) {
      case 0:
        bytes[position] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
      case 1:
        bytes[position] = [0x00, 0x7F, 0x80, 0xFF].randomElement(using: &generator) ?? 0
      case 2:
        let fill: UInt8 = Bool.random(using: &generator) ? 0xFF : 0x7F
        for index in position..<min(bytes.count, position + 4) {
          bytes[index] = index == position ? fill : 0xFF
        }
      case 3:
        bytes.removeLast(Int.random(in: 0...(bytes.count - position), using: &generator))
      default:
        bytes.append(UInt8.random(in: 0...255, using: &generator))
      }
    }
  }
}
