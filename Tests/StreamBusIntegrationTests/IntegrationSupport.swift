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

/// Runs `operation` in its own task and reports whether it finished within `limit`. The task
/// is left running (and cancelled) when it does not: a hung await cannot be interrupted, but
/// the test can record the hang instead of blocking forever.
func completes(
  within limit: Duration, _ operation: @escaping @Sendable () async -> Void
) async -> Bool {
  let finished = CompletionFlag()
  let task = Task {
    await operation()
    finished.set()
  }
  let deadline = ContinuousClock.now + limit
  while ContinuousClock.now < deadline {
    if finished.isSet { return true }
    try? await Task.sleep(for: .milliseconds(20))
  }
  task.cancel()
  return finished.isSet
}

final class CompletionFlag: @unchecked Sendable {
  private let lock = NSLock()
  private var value = false

  func set() { lock.withLock { value = true } }
  var isSet: Bool { lock.withLock { value } }
}

/// Which step of a multi-step wait is running, for failure messages.
final class StageMarker: @unchecked Sendable {
  private let lock = NSLock()
  private var current: String

  init(_ initial: String) {
    current = initial
  }

  func set(_ stage: String) { lock.withLock { current = stage } }
  var value: String { lock.withLock { current } }
}
