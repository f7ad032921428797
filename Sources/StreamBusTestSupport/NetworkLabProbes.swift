import Foundation
import StreamBusProtocol

#if canImport(Glibc)
  import Glibc
#endif

/// What one broker answered to a single produce request.
public enum LabProduceOutcome: Sendable, Equatable, CustomStringConvertible {
  /// The broker acknowledged the record at this offset.
  case acknowledged(offset: Int64)
  /// The broker answered with an error (e.g. NOT_LEADER_OR_FOLLOWER).
  case refused(String)
  /// Connected, but no answer within the timeout.
  case noAnswer
  /// No TCP connection within the timeout.
  case unreachable

  public var isAcknowledged: Bool {
    if case .acknowledged = self { return true }
    return false
  }

  public var description: String {
    switch self {
    case .acknowledged(let offset): return "acknowledged at offset \(offset)"
    case .refused(let error): return "refused: \(error)"
    case .noAnswer: return "no answer"
    case .unreachable: return "unreachable"
    }
  }
}

extension NetworkLab {
  /// Sends ONE acks=all produce request of one record straight to `brokerAddress` (no client
  /// library: no metadata refresh, no retry, no other broker), from inside `node`, and
  /// reports what that broker answered. This is how a test asks "does this broker still act
  /// as leader?" without a client that would quietly move to the new leader.
  public func produceProbe(
    from node: LabNode, brokerAddress: String, topic: String, partition: Int32,
    value: String = "probe", timeoutMs: Int = 5_000
  ) async throws -> LabProduceOutcome {
    guard let colon = brokerAddress.lastIndex(of: ":"),
      let port = Int(brokerAddress[brokerAddress.index(after: colon)...])
    else { throw HarnessError("bad broker address \(brokerAddress)") }
    let host = String(brokerAddress[..<colon])
    let request = ProduceRequest(
      acks: -1, timeoutMs: Int32(timeoutMs),
      topics: [
        .init(
          name: topic,
          partitions: [
            .init(partition: partition, records: RecordBatches.batch(values: [Array(value.utf8)]))
          ])
      ])
    let frame = Request.produce(request).encodeFrame(
      header: RequestHeader(
        apiKey: .produce, apiVersion: 0, correlationId: 1, clientId: "network-lab-probe"))
    let answer = try await inNamespace(of: node) { () -> ProbeAnswer in
      let descriptor = labConnectedSocket(host: host, port: port, timeoutMs: timeoutMs)
      guard descriptor >= 0 else { return .unreachable }
      defer { close(descriptor) }
      guard labWriteAll(descriptor, frame) else { return .noAnswer }
      guard let prefix = labReadExactly(descriptor, 4) else { return .noAnswer }
      let length = prefix.reduce(0) { $0 << 8 | Int($1) }
      guard length <= 1 << 20, let payload = labReadExactly(descriptor, length) else {
        return .noAnswer
      }
      return .payload(payload)
    }
    switch answer {
    case .unreachable: return .unreachable
    case .noAnswer: return .noAnswer
    case .payload(let payload):
      let (header, response) = try Response.decode(apiKey: .produce, version: 0, payload: payload)
      if header.errorCode != .none {
        return .refused("\(header.errorCode) \(header.errorMessage ?? "")")
      }
      guard case .produce(let body) = response, let result = body.topics.first?.partitions.first
      else { throw HarnessError("unexpected produce response \(String(describing: response))") }
      if result.errorCode != .none {
        return .refused("\(result.errorCode) \(result.errorMessage ?? "")")
      }
      return .acknowledged(offset: result.baseOffset)
    }
  }
}

private enum ProbeAnswer: Sendable {
  case unreachable
  case noAnswer
  case payload([UInt8])
}

private func labWriteAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
  var offset = 0
  while offset < bytes.count {
    let count = bytes.withUnsafeBytes { buffer -> Int in
      guard let base = buffer.baseAddress else { return 0 }
      return send(descriptor, base + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
    }
    if count < 0 && errno == EINTR { continue }
    if count <= 0 { return false }
    offset += count
  }
  return true
}

private func labReadExactly(_ descriptor: Int32, _ count: Int) -> [UInt8]? {
  var bytes = [UInt8](repeating: 0, count: count)
  var offset = 0
  while offset < count {
    let received = bytes.withUnsafeMutableBytes { buffer -> Int in
      guard let base = buffer.baseAddress else { return 0 }
      return recv(descriptor, base + offset, count - offset, 0)
    }
    if received < 0 && errno == EINTR { continue }
    if received <= 0 { return nil }
    offset += received
  }
  return bytes
}
