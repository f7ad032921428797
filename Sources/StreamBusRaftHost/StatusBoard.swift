import NIOConcurrencyHelpers

/// The latest `RaftHostStatus`, readable from any thread, and the subscribers of its
/// leadership changes. Only the driver thread publishes, so subscribers see changes in order.
final class StatusBoard: Sendable {
  private struct State {
    var status: RaftHostStatus
    var subscribers: [UInt64: AsyncStream<RaftHostStatus>.Continuation] = [:]
    var nextSubscriberID: UInt64 = 0
    var finished = false
  }

  private let state: NIOLockedValueBox<State>

  init(_ initial: RaftHostStatus) {
    state = NIOLockedValueBox(State(status: initial))
  }

  var current: RaftHostStatus { state.withLockedValue { $0.status } }

  func publish(_ status: RaftHostStatus) {
    state.withLockedValue { state in
      let changed = state.status.leadershipView != status.leadershipView
      state.status = status
      // Yielding never runs termination handlers, so it is safe under the lock, and doing
      // it here keeps every subscriber's sequence in publication order.
      if changed {
        for continuation in state.subscribers.values { continuation.yield(status) }
      }
    }
  }

  /// Starts with the current status, then every status whose leadership view changed.
  func subscribe() -> AsyncStream<RaftHostStatus> {
    let (stream, continuation) = AsyncStream.makeStream(
      of: RaftHostStatus.self, bufferingPolicy: .bufferingNewest(64))
    let finished = state.withLockedValue { state -> Bool in
      continuation.yield(state.status)
      if state.finished { return true }
      state.nextSubscriberID += 1
      let id = state.nextSubscriberID
      state.subscribers[id] = continuation
      continuation.onTermination = { [weak self] _ in
        self?.state.withLockedValue { _ = $0.subscribers.removeValue(forKey: id) }
      }
      return false
    }
    if finished { continuation.finish() }
    return stream
  }

  /// Ends every subscription (the host shut down).
  func finish() {
    let subscribers = state.withLockedValue { state in
      state.finished = true
      let subscribers = Array(state.subscribers.values)
      state.subscribers = [:]
      return subscribers
    }
    for continuation in subscribers { continuation.finish() }
  }
}
