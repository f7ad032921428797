/// One thing a workload did or saw, as kept in a `History` and written as one JSON line.
///
/// Values are identified by a unique string id (`ValueID`), never by their bytes, so the
/// checker can tell every record apart and the history stays small.
public struct HistoryEvent: Sendable, Hashable, Codable {
  public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
    /// A producer queued a value for a partition (before anything was sent).
    case send
    /// The broker acknowledged the value at `offset` (-1 when it did not say where, as for a
    /// duplicate it recognized without knowing the original offset).
    case ack
    /// The producer gave up on the value (`errorCode`, `message`); it may or may not be in
    /// the log, as with any failed write.
    case error
    /// A consumer read `value` at (`partition`, `offset`); `isFinal` marks the final full read.
    case read
    /// A timeline entry (fault injected, leader seen, ...), ignored by the checker.
    case note
  }

  public var kind: Kind
  /// Microseconds since the history started, from a monotonic clock.
  public var timeUs: Int64
  /// Who acted: a producer (`w3`), a reader (`final`, `tail-1`) or the test (`nemesis`).
  public var process: String
  /// -1 for notes that concern no partition.
  public var partition: Int32
  /// The value id sent, acknowledged, failed or read; nil for a note or a null value read.
  public var value: String?
  /// Ack: where the broker put the value; read: where it was found.
  public var offset: Int64?
  /// Error: the broker's error code when there was one.
  public var errorCode: Int16?
  /// Error: what went wrong; note: the text.
  public var message: String?
  /// Read: true for records of the final full read (the log as it is at the end).
  public var isFinal: Bool?

  public init(
    kind: Kind, timeUs: Int64, process: String, partition: Int32, value: String? = nil,
    offset: Int64? = nil, errorCode: Int16? = nil, message: String? = nil, isFinal: Bool? = nil
  ) {
    self.kind = kind
    self.timeUs = timeUs
    self.process = process
    self.partition = partition
    self.value = value
    self.offset = offset
    self.errorCode = errorCode
    self.message = message
    self.isFinal = isFinal
  }

  public static func send(_ value: String, process: String, partition: Int32, timeUs: Int64 = 0)
    -> HistoryEvent
  {
    HistoryEvent(kind: .send, timeUs: timeUs, process: process, partition: partition, value: value)
  }

  public static func ack(
    _ value: String, offset: Int64, process: String, partition: Int32, timeUs: Int64 = 0
  ) -> HistoryEvent {
    HistoryEvent(
      kind: .ack, timeUs: timeUs, process: process, partition: partition, value: value,
      offset: offset)
  }

  public static func error(
    _ value: String, errorCode: Int16?, message: String, process: String, partition: Int32,
    timeUs: Int64 = 0
  ) -> HistoryEvent {
    HistoryEvent(
      kind: .error, timeUs: timeUs, process: process, partition: partition, value: value,
      errorCode: errorCode, message: message)
  }

  public static func read(
    _ value: String?, offset: Int64, partition: Int32, process: String, isFinal: Bool,
    timeUs: Int64 = 0
  ) -> HistoryEvent {
    HistoryEvent(
      kind: .read, timeUs: timeUs, process: process, partition: partition, value: value,
      offset: offset, isFinal: isFinal)
  }

  public static func note(
    _ text: String, process: String = "test", partition: Int32 = -1, timeUs: Int64 = 0
  ) -> HistoryEvent {
    HistoryEvent(kind: .note, timeUs: timeUs, process: process, partition: partition, message: text)
  }
}

/// The unique values a workload writes: `w<worker>-<sequence>`, optionally padded with `.` to a
/// fixed size so records have a realistic length while the id stays readable in the log.
public enum ValueID {
  public static let padding = UInt8(ascii: ".")

  public static func make(worker: Int, sequence: Int) -> String {
    "w\(worker)-\(sequence)"
  }

  /// The record value for `id`, padded to `bytes` when that is longer than the id.
  public static func encode(_ id: String, paddedTo bytes: Int = 0) -> [UInt8] {
    var value = Array(id.utf8)
    if value.count < bytes {
      value.append(contentsOf: repeatElement(padding, count: bytes - value.count))
    }
    return value
  }

  /// The id in a record value: the bytes before the padding. Bytes that are not UTF-8 come
  /// back as `hex:...`, so the checker reports them as unknown values instead of hiding them.
  public static func decode(_ value: [UInt8]?) -> String? {
    guard let value else { return nil }
    let idBytes = value.prefix { $0 != padding }
    if let text = String(validating: idBytes, as: UTF8.self) {
      return text
    }
    return "hex:" + idBytes.map { byte in String(byte, radix: 16).leftPadded(to: 2) }.joined()
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    count >= width ? self : String(repeating: "0", count: width - count) + self
  }
}
