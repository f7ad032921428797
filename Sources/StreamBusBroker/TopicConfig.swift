import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage

/// A request was refused: the wire error code and a message for the client.
public struct BrokerRequestError: Error, Sendable, Equatable, CustomStringConvertible {
  public let errorCode: ErrorCode
  public let message: String

  public init(_ errorCode: ErrorCode, _ message: String) {
    self.errorCode = errorCode
    self.message = message
  }

  public var description: String { "\(errorCode): \(message)" }
}

/// Topic names follow Kafka's rules, so names are safe as file and directory names.
public enum TopicName {
  public static let lengthMax = 249

  /// Throws `INVALID_TOPIC_EXCEPTION` naming the rule the name breaks.
  public static func validate(_ name: String) throws(BrokerRequestError) {
    func invalid(_ reason: String) -> BrokerRequestError {
      BrokerRequestError(.invalidTopic, "invalid topic name \"\(name)\": \(reason)")
    }
    guard !name.isEmpty else { throw invalid("empty") }
    guard name != "." && name != ".." else { throw invalid("\".\" and \"..\" are reserved") }
    guard name.utf8.count <= lengthMax else {
      throw invalid("longer than \(lengthMax) characters")
    }
    let allowed = name.utf8.allSatisfy { byte in
      (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
        || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
    guard allowed else { throw invalid("only ASCII letters, digits, '.', '_' and '-' are allowed") }
  }
}

/// Defaults applied to topics that do not override a setting, from broker flags.
public struct TopicDefaults: Sendable, Equatable {
  /// nil keeps data forever (Kafka's -1).
  public var retentionMs: Int64? = 7 * 24 * 3_600_000
  public var retentionBytes: Int64? = nil
  public var segmentBytes: Int = 1 << 30
  public var segmentMs: Int64 = 7 * 24 * 3_600_000
  public var minInsyncReplicas: Int = 1

  public init() {}
}

/// The validated configuration of one topic: its overrides (kept as given, persisted and
/// reported by Metadata) and the effective values.
public struct TopicConfig: Sendable, Equatable {
  public static let retentionMsKey = "retention.ms"
  public static let retentionBytesKey = "retention.bytes"
  public static let segmentBytesKey = "segment.bytes"
  public static let segmentMsKey = "segment.ms"
  public static let minInsyncReplicasKey = "min.insync.replicas"
  public static let cleanupPolicyKey = "cleanup.policy"
  public static let validKeys = [
    cleanupPolicyKey, minInsyncReplicasKey, retentionBytesKey, retentionMsKey, segmentBytesKey,
    segmentMsKey,
  ]

  /// Keys set explicitly for this topic, sorted by key.
  public private(set) var overrides: [(key: String, value: String)]
  public private(set) var retentionMs: Int64?
  public private(set) var retentionBytes: Int64?
  public private(set) var segmentBytes: Int
  public private(set) var segmentMs: Int64
  public private(set) var minInsyncReplicas: Int

  /// Validates `entries` (a nil value means "use the default"). Throws `INVALID_CONFIG`
  /// for an unknown key, a repeated key, or a value out of range.
  public init(_ entries: [(key: String, value: String?)], defaults: TopicDefaults)
    throws(BrokerRequestError)
  {
    retentionMs = defaults.retentionMs
    retentionBytes = defaults.retentionBytes
    segmentBytes = defaults.segmentBytes
    segmentMs = defaults.segmentMs
    minInsyncReplicas = defaults.minInsyncReplicas
    overrides = []
    var seen = Set<String>()
    for (key, value) in entries {
      guard Self.validKeys.contains(key) else {
        throw BrokerRequestError(
          .invalidConfig,
          "unknown topic config \"\(key)\"; valid keys: \(Self.validKeys.joined(separator: ", "))")
      }
      guard seen.insert(key).inserted else {
        throw BrokerRequestError(.invalidConfig, "topic config \"\(key)\" is given twice")
      }
      guard let value else { continue }
      try apply(key: key, value: value)
      overrides.append((key, value))
    }
    overrides.sort { $0.key < $1.key }
  }

  private mutating func apply(key: String, value: String) throws(BrokerRequestError) {
    func number(_ range: ClosedRange<Int64>) throws(BrokerRequestError) -> Int64 {
      guard let parsed = Int64(value), range.contains(parsed) else {
        throw BrokerRequestError(
          .invalidConfig,
          "topic config \(key)=\"\(value)\" must be an integer in "
            + "\(range.lowerBound)...\(range.upperBound)")
      }
      return parsed
    }
    switch key {
    case Self.retentionMsKey:
      let parsed = try number(-1...Int64.max)
      retentionMs = parsed == -1 ? nil : parsed
    case Self.retentionBytesKey:
      let parsed = try number(-1...Int64.max)
      retentionBytes = parsed == -1 ? nil : parsed
    case Self.segmentBytesKey:
      segmentBytes = Int(
        try number(Int64(RecordBatchHeader.byteCount)...Int64(LogConfig.segmentBytesMax)))
    case Self.segmentMsKey:
      segmentMs = try number(1...Int64.max)
    case Self.minInsyncReplicasKey:
      minInsyncReplicas = Int(try number(1...Int64(Int16.max)))
    case Self.cleanupPolicyKey:
      guard value == "delete" else {
        throw BrokerRequestError(
          .invalidConfig,
          "topic config cleanup.policy=\"\(value)\" is not supported; only \"delete\" is")
      }
    default:
      preconditionFailure("key \(key) passed the validKeys check but has no parser")
    }
  }

  /// The storage settings for this topic's partition logs.
  public func logConfig(flushPolicy: FlushPolicy, batchBytesMax: Int) -> LogConfig {
    var config = LogConfig()
    config.retentionMs = retentionMs
    config.retentionBytes = retentionBytes
    config.segmentBytes = segmentBytes
    config.segmentMs = segmentMs
    config.flushPolicy = flushPolicy
    config.batchBytesMax = min(
      max(batchBytesMax, RecordBatchHeader.byteCount), LogConfig.segmentBytesMax)
    return config
  }

  public static func == (left: TopicConfig, right: TopicConfig) -> Bool {
    left.overrides.elementsEqual(right.overrides) { $0.key == $1.key && $0.value == $1.value }
      && left.retentionMs == right.retentionMs && left.retentionBytes == right.retentionBytes
      && left.segmentBytes == right.segmentBytes && left.segmentMs == right.segmentMs
      && left.minInsyncReplicas == right.minInsyncReplicas
  }
}
