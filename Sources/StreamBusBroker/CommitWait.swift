import NIOConcurrencyHelpers

/// One acks=all produce's wait for the high watermark to pass its batch.
///
/// The replica registers it in the same actor turn as the append, so no commit, flush
/// failure or timeout can slip in between; the request awaits it later, outside the actor,
/// while the connection goes on with its next requests. Resolved once: later resolutions
/// (a flush failure after a timeout) are ignored.
final class CommitWait: Sendable {
  private struct State {
    /// nil inside: committed; an error: failed. nil outside: not resolved yet.
    var result: BrokerRequestError??
    var waiter: CheckedContinuation<BrokerRequestError?, Never>?
  }

  private let state = NIOLockedValueBox(State())

  /// Completes the wait: `nil` when the batch is committed, else why it is not.
  func resolve(_ failure: BrokerRequestError?) {
    let waiter = state.withLockedValue {
      state -> CheckedContinuation<BrokerRequestError?, Never>? in
      guard state.result == nil else { return nil }
      state.result = .some(failure)
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume(returning: failure)
  }

  /// Whether `resolve` has been called (the outcome is known).
  var isResolved: Bool { state.withLockedValue { $0.result != nil } }

  /// Returns nil once committed, or the failure. Cancellation (the client's connection
  /// closed) ends the wait early with REQUEST_TIMED_OUT; the batch stays appended.
  func wait() async -> BrokerRequestError? {
    await withTaskCancellationHandler {
      await withCheckedContinuation {
        (continuation: CheckedContinuation<BrokerRequestError?, Never>) in
        let result = state.withLockedValue { state -> BrokerRequestError?? in
          if let result = state.result { return .some(result) }
          precondition(state.waiter == nil, "one waiter at a time")
          state.waiter = continuation
          return nil
        }
        if let result {
          continuation.resume(returning: result)
        }
      }
    } onCancel: {
      resolve(
        BrokerRequestError(
          .requestTimedOut, "the request was abandoned before its batch was committed"))
    }
  }
}
