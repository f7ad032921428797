import Foundation

/// Every send, acknowledgement, error and read of one workload on one topic, in the order they
/// were recorded, with timestamps from one monotonic clock. Safe to record into from any task.
public final class History: @unchecked Sendable {
  public let topic: String
  /// Wall-clock time of `timeUs == 0`, for matching the history with process logs.
  public let startedAt: Date
  private let startInstant: ContinuousClock.Instant
  // Everything mutable is behind `lock`; recording is a short append.
  private let lock = NSLock()
  private var storage: [HistoryEvent] = []

  public init(topic: String) {
    self.topic = topic
    startedAt = Date()
    startInstant = ContinuousClock.now
  }

  /// A history made of given events (crafted in tests, or loaded from a file).
  public init(topic: String, events: [HistoryEvent], startedAt: Date = Date()) {
    self.topic = topic
    self.startedAt = startedAt
    startInstant = ContinuousClock.now
    storage = events
  }

  /// Microseconds since the history started.
  public func nowUs() -> Int64 {
    Self.microseconds(ContinuousClock.now - startInstant)
  }

  /// The `timeUs` of `instant` on this history's clock.
  public func timeUs(of instant: ContinuousClock.Instant) -> Int64 {
    Self.microseconds(instant - startInstant)
  }

  static func microseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
  }

  // MARK: - Recording

  /// Appends `event` with its time set to now; returns that time.
  @discardableResult
  public func record(_ event: HistoryEvent) -> Int64 {
    var event = event
    return lock.withLock {
      // Taking the time under the lock keeps the stored order and the timestamps consistent.
      event.timeUs = nowUs()
      storage.append(event)
      return event.timeUs
    }
  }

  /// Appends several events with one timestamp (e.g. the records of one fetch).
  public func record(contentsOf events: [HistoryEvent]) {
    guard !events.isEmpty else { return }
    lock.withLock {
      let time = nowUs()
      for var event in events {
        event.timeUs = time
        storage.append(event)
      }
    }
  }

  /// Appends an event exactly as given (its `timeUs` is kept).
  public func append(_ event: HistoryEvent) {
    lock.withLock { storage.append(event) }
  }

  @discardableResult
  public func recordSend(_ value: String, process: String, partition: Int32) -> Int64 {
    record(.send(value, process: process, partition: partition))
  }

  @discardableResult
  public func recordAck(_ value: String, offset: Int64, process: String, partition: Int32)
    -> Int64
  {
    record(.ack(value, offset: offset, process: process, partition: partition))
  }

  @discardableResult
  public func recordError(
    _ value: String, errorCode: Int16?, message: String, process: String, partition: Int32
  ) -> Int64 {
    record(
      .error(value, errorCode: errorCode, message: message, process: process, partition: partition))
  }

  @discardableResult
  public func recordNote(_ text: String, process: String = "test", partition: Int32 = -1)
    -> Int64
  {
    record(.note(text, process: process, partition: partition))
  }

  // MARK: - Reading

  /// A copy of every event so far, in recording order.
  public var events: [HistoryEvent] { lock.withLock { storage } }

  public var count: Int { lock.withLock { storage.count } }

  /// The notes, in order: the test's timeline.
  public var notes: [HistoryEvent] { events.filter { $0.kind == .note } }

  /// The first acknowledgement on `partition` recorded at or after `timeUs`.
  public func firstAck(partition: Int32, atOrAfterUs timeUs: Int64) -> HistoryEvent? {
    lock.withLock {
      storage.first { $0.kind == .ack && $0.partition == partition && $0.timeUs >= timeUs }
    }
  }

  /// The longest stretch without any acknowledgement on `partition` between `fromUs` and
  /// `toUs` (both ends count as boundaries): the partition's write unavailability there.
  public func longestAckGap(partition: Int32, fromUs: Int64, toUs: Int64) -> (
    startUs: Int64, endUs: Int64
  ) {
    let times = lock.withLock {
      storage.filter {
        $0.kind == .ack && $0.partition == partition && $0.timeUs > fromUs && $0.timeUs < toUs
      }.map(\.timeUs)
    }
    var longest = (startUs: fromUs, endUs: fromUs)
    var previous = fromUs
    for time in times + [toUs] {
      if time - previous > longest.endUs - longest.startUs {
        longest = (previous, time)
      }
      previous = time
    }
    return longest
  }
}
