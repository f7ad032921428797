import NIOConcurrencyHelpers

/// Wakes one waiting fetch when a partition it reads from has new visible data (or goes
/// away), or when its deadline passes.
///
/// Signals are sticky: a signal that arrives while nobody waits is remembered, so a fetch
/// that registers, reads, and then waits cannot miss an advance that happened in between.
/// A partition's signal names the partition, so the fetch re-reads only the partitions
/// with news (a follower's long-poll names every partition it follows, most of them idle).
final class FetchWakeup: Sendable {
  /// What woke a wait: named partitions, or `everything` (the deadline, a cancellation, a
  /// signal without a partition), after which all partitions are read again.
  struct News: Sendable {
    var everything = false
    var partitions: Set<TopicPartition> = []

    var isEmpty: Bool { !everything && partitions.isEmpty }
  }

  private struct State {
    var news = News()
    var waiter: CheckedContinuation<News, Never>?
  }

  private let state = NIOLockedValueBox(State())

  /// Identity for registration with replicas.
  var id: ObjectIdentifier { ObjectIdentifier(self) }

  /// Whether a signal arrived that no wait has taken yet.
  var isSignalled: Bool { state.withLockedValue { !$0.news.isEmpty } }

  /// Wakes the wait for everything: the fetch reads all its partitions again.
  func signal() {
    deliver { $0.everything = true }
  }

  /// Wakes the wait for news of one partition.
  func signal(_ topicPartition: TopicPartition) {
    deliver { $0.partitions.insert(topicPartition) }
  }

  private func deliver(_ add: (inout News) -> Void) {
    let resumed = state.withLockedValue { state -> (CheckedContinuation<News, Never>, News)? in
      add(&state.news)
      guard let waiter = state.waiter else { return nil }
      state.waiter = nil
      defer { state.news = News() }
      return (waiter, state.news)
    }
    if let (waiter, news) = resumed {
      waiter.resume(returning: news)
    }
  }

  /// Returns the news of the next signal, or at once the news gathered since the last
  /// wait. Task cancellation (the client's connection closed) counts as news of everything.
  @discardableResult
  func wait() async -> News {
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<News, Never>) in
        let gathered = state.withLockedValue { state -> News? in
          precondition(state.waiter == nil, "one waiter at a time")
          if !state.news.isEmpty {
            defer { state.news = News() }
            return state.news
          }
          state.waiter = continuation
          return nil
        }
        if let gathered {
          continuation.resume(returning: gathered)
        }
      }
    } onCancel: {
      signal()
    }
  }
}

/// The fetches waiting on one partition. Kept outside the replica's actor so that a
/// long-poll registers and unregisters on each partition it names without an actor hop
/// per partition, twice per fetch round.
final class FetchWaiters: Sendable {
  private struct State {
    /// Followers' fetches: woken when the log end offset grows, not when the high watermark
    /// moves (only consumers care about that).
    var followerFetches: [ObjectIdentifier: FetchWakeup] = [:]
    var consumerFetches: [ObjectIdentifier: FetchWakeup] = [:]
    var isClosed = false
  }

  private let topicPartition: TopicPartition
  private let state = NIOLockedValueBox(State())

  init(_ topicPartition: TopicPartition) {
    self.topicPartition = topicPartition
  }

  /// Registers a fetch; once the partition closed, it is woken at once instead.
  func add(_ wakeup: FetchWakeup, isFollowerFetch: Bool) {
    let closed = state.withLockedValue { state -> Bool in
      guard !state.isClosed else { return true }
      if isFollowerFetch {
        state.followerFetches[wakeup.id] = wakeup
      } else {
        state.consumerFetches[wakeup.id] = wakeup
      }
      return false
    }
    if closed {
      wakeup.signal(topicPartition)
    }
  }

  func remove(_ wakeup: FetchWakeup) {
    state.withLockedValue { state in
      state.followerFetches.removeValue(forKey: wakeup.id)
      state.consumerFetches.removeValue(forKey: wakeup.id)
    }
  }

  /// New data on a leader: followers' long-polls wait for it.
  func signalFollowerFetches() {
    signal(followers: true, consumers: false)
  }

  /// The high watermark moved: consumers' fetches wait for it.
  func signalConsumerFetches() {
    signal(followers: false, consumers: true)
  }

  /// Wakes every waiting fetch (a role change, shutdown: they answer with what they have).
  func signalAll() {
    signal(followers: true, consumers: true)
  }

  /// The partition closes: every waiting fetch and every later one is woken.
  func close() {
    state.withLockedValue { $0.isClosed = true }
    signalAll()
  }

  private func signal(followers: Bool, consumers: Bool) {
    // Signalled under the lock: a wakeup's own lock is never held while taking this one,
    // and a resumed continuation only schedules its task.
    state.withLockedValue { state in
      if followers {
        for wakeup in state.followerFetches.values { wakeup.signal(topicPartition) }
      }
      if consumers {
        for wakeup in state.consumerFetches.values { wakeup.signal(topicPartition) }
      }
    }
  }
}
