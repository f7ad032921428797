import NIOConcurrencyHelpers

/// What the broker said about one batch.
struct BatchAcknowledgement: Sendable {
  /// Offset of the batch's first record; -1 with acks=0.
  var baseOffset: Int64
  /// The broker's append time when the topic uses log-append time, else -1.
  var logAppendTimeMs: Int64
}

/// The outcome of one batch, awaited by every record's handle in it. One completion per
/// batch keeps the cost per record at an index.
final class BatchCompletion: Sendable {
  private struct State {
    var result: Result<BatchAcknowledgement, StreamBusError>?
    var waiters: [CheckedContinuation<Result<BatchAcknowledgement, StreamBusError>, Never>] = []
  }

  private let state = NIOLockedValueBox(State())

  var isComplete: Bool { state.withLockedValue { $0.result != nil } }

  /// Completes once; later calls are ignored.
  func complete(_ result: Result<BatchAcknowledgement, StreamBusError>) {
    let waiters = state.withLockedValue { state in
      guard state.result == nil else {
        return [CheckedContinuation<Result<BatchAcknowledgement, StreamBusError>, Never>]()
      }
      state.result = result
      defer { state.waiters.removeAll() }
      return state.waiters
    }
    for waiter in waiters {
      waiter.resume(returning: result)
    }
  }

  func wait() async -> Result<BatchAcknowledgement, StreamBusError> {
    if let result = state.withLockedValue({ $0.result }) {
      return result
    }
    return await withCheckedContinuation { continuation in
      let result = state.withLockedValue {
        state -> Result<BatchAcknowledgement, StreamBusError>? in
        if let result = state.result { return result }
        state.waiters.append(continuation)
        return nil
      }
      if let result {
        continuation.resume(returning: result)
      }
    }
  }
}

/// A queued record's future: `value()` waits for the broker's acknowledgement.
public struct DeliveryHandle: Sendable {
  public let topic: String
  public let partition: Int32
  /// The record's create timestamp (ms since the epoch).
  public let timestamp: Int64
  let completion: BatchCompletion
  let indexInBatch: Int

  /// True once the record was acknowledged or failed.
  public var isComplete: Bool { completion.isComplete }

  /// Waits for the acknowledgement and returns where the record landed.
  public func value() async throws -> RecordMetadata {
    try await result().get()
  }

  /// As `value()`, without throwing.
  public func result() async -> Result<RecordMetadata, StreamBusError> {
    switch await completion.wait() {
    case .success(let acknowledgement):
      return .success(
        RecordMetadata(
          topic: topic, partition: partition,
          offset: acknowledgement.baseOffset < 0
            ? -1 : acknowledgement.baseOffset + Int64(indexInBatch),
          timestamp: acknowledgement.logAppendTimeMs >= 0
            ? acknowledgement.logAppendTimeMs : timestamp))
    case .failure(let error):
      return .failure(error)
    }
  }
}
