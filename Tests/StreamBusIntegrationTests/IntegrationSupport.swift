import Foundation
import StreamBusRecords
import StreamBusTestSupport

/// Values that name their sequence number, so a consumed log can be checked against what was
/// sent without keeping every value around.
enum SequencedValues {
  static func value(_ sequence: Int, padTo bytes: Int = 0) -> [UInt8] {
    var value = Array("record-\(sequence)".utf8)
    if value.count < bytes {
      value.append(contentsOf: repeatElement(UInt8(ascii: "."), count: bytes - value.count))
    }
    return value
  }

  /// The sequence number in a value made by `value(_:padTo:)`, nil for anything else.
  static func sequence(of value: [UInt8]?) -> Int? {
    guard let value else { return nil }
    let prefix = Array("record-".utf8)
    guard value.count > prefix.count, Array(value[0..<prefix.count]) == prefix else { return nil }
    let digits = value[prefix.count...].prefix {
      $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")
    }
    return Int(String(decoding: digits, as: UTF8.self))
  }
}

/// Thread-safe record of what a producer sent and what the broker acknowledged.
final class AcknowledgementLog: @unchecked Sendable {
  private let lock = NSLock()
  private var nextSequence = 0
  private var acknowledgedOffsets: [Int: Int64] = [:]
  private var failures = 0

  /// Reserves the next `count` sequence numbers (in send order).
  func reserve(_ count: Int) -> Range<Int> {
    lock.withLock {
      let range = nextSequence..<nextSequence + count
      nextSequence += count
      return range
    }
  }

  func acknowledge(_ sequences: Range<Int>, baseOffset: Int64) {
    lock.withLock {
      for (index, sequence) in sequences.enumerated() {
        acknowledgedOffsets[sequence] = baseOffset + Int64(index)
      }
    }
  }

  func recordFailure() {
    lock.withLock { failures += 1 }
  }

  var sentCount: Int { lock.withLock { nextSequence } }
  var acknowledgedCount: Int { lock.withLock { acknowledgedOffsets.count } }
  var acknowledged: [Int: Int64] { lock.withLock { acknowledgedOffsets } }
}

extension ProcessHarness {
  /// Runs `body` in a harness named after the test; see `withHarness`.
  static func run<Result>(
    _ name: String = #function, body: (ProcessHarness) async throws -> Result
  ) async throws -> Result {
    try await withHarness(name, body: body)
  }
}
