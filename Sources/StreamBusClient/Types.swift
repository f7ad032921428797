import Foundation

/// A partition of a topic.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var topic: String
  public var partition: Int32

  public init(topic: String, partition: Int32) {
    self.topic = topic
    self.partition = partition
  }

  public static func < (left: TopicPartition, right: TopicPartition) -> Bool {
    (left.topic, left.partition) < (right.topic, right.partition)
  }

  public var description: String { "\(topic)-\(partition)" }
}

/// A record header: UTF-8 key, optional bytes.
public struct Header: Hashable, Sendable {
  public var key: String
  public var value: [UInt8]?

  public init(key: String, value: [UInt8]?) {
    self.key = key
    self.value = value
  }
}

/// Where an acknowledged record landed.
public struct RecordMetadata: Hashable, Sendable {
  public var topic: String
  public var partition: Int32
  /// The record's offset; -1 with acks=0 (the broker does not answer).
  public var offset: Int64
  /// The record's timestamp (ms since the epoch): the create time the producer set, or the
  /// broker's append time when the topic uses log-append time.
  public var timestamp: Int64

  public init(topic: String, partition: Int32, offset: Int64, timestamp: Int64) {
    self.topic = topic
    self.partition = partition
    self.offset = offset
    self.timestamp = timestamp
  }
}

/// One record read by a `Consumer`.
public struct ConsumerRecord: Hashable, Sendable {
  public var topic: String
  public var partition: Int32
  public var offset: Int64
  public var timestamp: Int64
  public var key: [UInt8]?
  public var value: [UInt8]?
  public var headers: [Header]

  public init(
    topic: String, partition: Int32, offset: Int64, timestamp: Int64, key: [UInt8]?,
    value: [UInt8]?, headers: [Header] = []
  ) {
    self.topic = topic
    self.partition = partition
    self.offset = offset
    self.timestamp = timestamp
    self.key = key
    self.value = value
    self.headers = headers
  }
}

/// Milliseconds since the Unix epoch, for record timestamps.
func wallClockMs() -> Int64 {
  Int64((Date().timeIntervalSince1970 * 1000).rounded())
}

extension Duration {
  static func clampedMilliseconds(_ milliseconds: Int64) -> Duration {
    .milliseconds(max(0, milliseconds))
  }

  var wholeMilliseconds: Int64 {
    components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
  }
}
