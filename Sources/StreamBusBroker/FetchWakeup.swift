import NIOConcurrencyHelpers

/// Wakes one waiting fetch when a partition it reads from has new visible data (or goes
/// away), or when its deadline passes.
///
/// Signals are sticky: a signal that arrives while nobody waits is remembered, so a fetch
/// that registers, reads, and then waits cannot miss an advance that happened in between.
final class FetchWakeup: Sendable {
  private struct State {
    var isSignalled = false
    var waiter: CheckedContinuation<Void, Never>?
  }

  private let state = NIOLockedValueBox(State())

  /// Identity for registration with replicas.
  var id: ObjectIdentifier { ObjectIdentifier(self) }

  /// Whether a signal arrived that no wait has taken yet.
  var isSignalled: Bool { state.withLockedValue { $0.isSignalled } }

  func signal() {
    let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
      if let waiter = state.waiter {
        state.waiter = nil
        return waiter
      }
      state.isSignalled = true
      return nil
    }
    waiter?.resume()
  }

  /// Returns at the next signal, or at once if one arrived since the last wait. Task
  /// cancellation (the client's connection closed) counts as a signal.
  func wait() async {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumeNow = state.withLockedValue { state -> Bool in
          precondition(state.waiter == nil, "one waiter at a time")
          if state.isSignalled {
            state.isSignalled = false
            return true
          }
          state.waiter = continuation
          return false
        }
        if resumeNow {
          continuation.resume()
        }
      }
    } onCancel: {
      signal()
    }
  }
}
