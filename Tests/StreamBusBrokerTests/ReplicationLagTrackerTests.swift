import Testing

@testable import StreamBusBroker

@Suite struct ReplicationLagTrackerTests {
  @Test func eachBatchIsMeasuredOncePerFollowerFromItsAppend() {
    var tracker = ReplicationLagTracker()
    // Follower 2 reports its position first: no sample for what came before.
    tracker.recordFetch(follower: 2, fetchOffset: 0, nowNs: 0)
    tracker.recordFetch(follower: 3, fetchOffset: 0, nowNs: 0)
    tracker.recordAppend(endOffset: 10, nowNs: 1_000_000)  // batch 0..<10 at 1 ms
    tracker.recordAppend(endOffset: 20, nowNs: 2_000_000)  // batch 10..<20 at 2 ms
    // Follower 2 has the first batch durable at 4 ms: 3 ms lag.
    tracker.recordFetch(follower: 2, fetchOffset: 10, nowNs: 4_000_000)
    // Follower 3 has both at 12 ms: 11 ms and 10 ms.
    tracker.recordFetch(follower: 3, fetchOffset: 20, nowNs: 12_000_000)
    // Asking again for the same offset adds nothing.
    tracker.recordFetch(follower: 3, fetchOffset: 20, nowNs: 50_000_000)
    // Follower 2 gets the second batch at 6 ms: 4 ms.
    tracker.recordFetch(follower: 2, fetchOffset: 20, nowNs: 6_000_000)
    let summary = tracker.summary()
    #expect(summary.samples == 4)
    #expect(summary.maxUs == 11_000)
    #expect(summary.p50Us == 10_000 || summary.p50Us == 4_000)
    #expect(summary.p99Us == 11_000)
  }

  @Test func withoutSamplesTheSummaryIsEmptyAndResetForgetsEverything() {
    var tracker = ReplicationLagTracker()
    #expect(tracker.summary() == .none)
    tracker.recordFetch(follower: 2, fetchOffset: 0, nowNs: 0)
    tracker.recordAppend(endOffset: 5, nowNs: 0)
    tracker.recordFetch(follower: 2, fetchOffset: 5, nowNs: 2_000)
    #expect(tracker.summary().samples == 1)
    tracker.reset()
    #expect(tracker.summary() == .none)
  }

  @Test func memoryStaysBoundedWhileAFollowerIsFarBehind() {
    var tracker = ReplicationLagTracker()
    tracker.recordFetch(follower: 2, fetchOffset: 0, nowNs: 0)
    let appends = ReplicationLagTracker.appendCapacity * 2
    for index in 1...appends {
      tracker.recordAppend(endOffset: Int64(index), nowNs: UInt64(index))
    }
    // Only the newest appendCapacity batches are still remembered.
    tracker.recordFetch(follower: 2, fetchOffset: Int64(appends), nowNs: UInt64(appends) + 1)
    #expect(tracker.summary().samples == Int64(ReplicationLagTracker.appendCapacity))
  }
}
