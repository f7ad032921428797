import Glibc
import NIOPosix
import StreamBusProtocol
import StreamBusRecords
import StreamBusStorage
import Testing

@testable import StreamBusBroker

@Suite struct ReplicationTests {
  @Test func acksAllCompletesOnlyAfterBothFollowersFetchedPastTheBatch() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    let pending = await trio[1].append(makeBatch(), acks: -1, timeoutMs: 60_000, nowMs: 0)
    #expect(pending.written.errorCode == .none)
    #expect(pending.awaitsCommit)
    // Follower 2 copies the batch and reports it durable with its next fetch.
    #expect(try await trio.pump(2) == .appended(logEndOffset: 3))
    #expect(try await trio.pump(2) == .caughtUp)
    #expect(await trio.state(1).highWatermark == 0)
    #expect(!pending.isSettled)
    // Follower 3 copying is not enough: the leader learns of it with the next fetch only.
    #expect(try await trio.pump(3) == .appended(logEndOffset: 3))
    #expect(!pending.isSettled)
    #expect(try await trio.pump(3) == .caughtUp)
    let outcome = await pending.outcome()
    #expect(outcome.errorCode == .none)
    #expect(outcome.baseOffset == 0)
    #expect(await trio.state(1).highWatermark == 3)
    // Followers learn the high watermark from the next response.
    try await trio.pumpUntilQuiet()
    #expect(await trio.state(2).highWatermark == 3)
    #expect(await trio.state(3).durableEndOffset == 3)
    await trio.shutdown()
  }

  @Test func highWatermarkIsTheMinimumOverTheIsr() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    _ = await trio[1].append(makeBatch(records: 3), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.pumpUntilQuiet()
    #expect(try await committed(trio, 1, 3))
    _ = await trio[1].append(makeBatch(records: 4), acks: 1, timeoutMs: 0, nowMs: 0)
    // Only follower 2 fetches past the second batch.
    try await trio.pump(2)
    try await trio.pump(2)
    #expect(await trio.state(1).logEndOffset == 7)
    #expect(await trio.state(1).highWatermark == 3)
    // Consumers never read past it.
    let read = await trio[1].read(from: 3, maxBytes: 1 << 20)
    #expect(read.errorCode == .none)
    #expect(read.records.isEmpty)
    try await trio.pump(3)
    try await trio.pump(3)
    #expect(try await committed(trio, 1, 7))
    let followers = await trio.state(1).followers
    #expect(followers.map(\.brokerID) == [2, 3])
    #expect(followers.map(\.logEndOffset) == [7, 7])
    await trio.shutdown()
  }

  @Test func acksAllIsRefusedUpFrontWhenTheIsrIsTooSmall() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1, isr: [1], minInsyncReplicas: 2)
    let refused = await trio[1].append(makeBatch(), acks: -1, timeoutMs: 1_000, nowMs: 0)
    #expect(refused.written.errorCode == .notEnoughReplicas)
    #expect(await trio.state(1).logEndOffset == 0)
    // acks=1 still works, and with one replica in the ISR it commits alone.
    let one = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 1_000, nowMs: 0)
    #expect(one.written.errorCode == .none)
    #expect(try await committed(trio, 1, 3))
    await trio.shutdown()
  }

  @Test func acksAllTimesOutWhenFollowersStall() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    let pending = await trio[1].append(makeBatch(), acks: -1, timeoutMs: 500, nowMs: 1_000)
    try await trio.pump(2)
    try await trio.pump(2)
    await trio[1].tick(nowMs: 1_499)
    #expect(!pending.isSettled)
    await trio[1].tick(nowMs: 1_501)
    #expect(await pending.outcome().errorCode == .requestTimedOut)
    // The batch stays appended and commits once follower 3 catches up.
    try await trio.pumpUntilQuiet()
    #expect(try await committed(trio, 1, 3))
    await trio.shutdown()
  }

  @Test func isrShrinksAfterTheLagTimeAndExpandsWhenCaughtUp() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1, nowMs: 1_000)
    try await trio.pumpUntilQuiet(nowMs: 1_000)
    #expect(await trio[1].isrChangeProposal(nowMs: 2_000, replicaLagTimeMaxMs: 2_000) == nil)
    _ = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 1_100)
    // Follower 2 keeps fetching; follower 3 stops.
    try await trio.pump(2, nowMs: 1_500)
    try await trio.pump(2, nowMs: 2_900)
    try await trio.pump(2, nowMs: 3_100)
    #expect(await trio[1].isrChangeProposal(nowMs: 3_000, replicaLagTimeMaxMs: 2_000) == nil)
    let shrink = try #require(
      await trio[1].isrChangeProposal(nowMs: 3_101, replicaLagTimeMaxMs: 2_000))
    #expect(shrink.newIsr == [1, 2])
    #expect(shrink.leaderEpoch == 1)
    #expect(shrink.partitionEpoch == trio.leadership.partitionEpoch)
    #expect(shrink.topicID == 42)
    // One proposal at a time, and the high watermark still waits for the old ISR.
    #expect(await trio[1].isrChangeProposal(nowMs: 3_200, replicaLagTimeMaxMs: 2_000) == nil)
    #expect(await trio.state(1).highWatermark == 0)
    await trio[1].isrChangeCompleted(
      newIsr: [1, 2], partitionEpoch: shrink.partitionEpoch + 1, error: .none)
    #expect(await trio.state(1).isr == [1, 2])
    #expect(try await committed(trio, 1, 3))
    // Follower 3 comes back and catches up past the high watermark: it may rejoin.
    try await trio.pump(3, nowMs: 3_300)
    #expect(await trio[1].isrChangeProposal(nowMs: 3_300, replicaLagTimeMaxMs: 2_000) == nil)
    try await trio.pump(3, nowMs: 3_400)
    let expand = try #require(
      await trio[1].isrChangeProposal(nowMs: 3_400, replicaLagTimeMaxMs: 2_000))
    #expect(expand.newIsr == [1, 2, 3])
    // A refused change is dropped and proposed again later.
    await trio[1].isrChangeCompleted(newIsr: nil, partitionEpoch: nil, error: .invalidRequest)
    #expect(await trio.state(1).isr == [1, 2])
    let again = try #require(
      await trio[1].isrChangeProposal(nowMs: 3_500, replicaLagTimeMaxMs: 2_000))
    #expect(again.newIsr == [1, 2, 3])
    await trio.shutdown()
  }

  @Test func acksAllCommittedByAnIsrBelowTheMinimumIsReportedAsSuch() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1, nowMs: 0)
    let pending = await trio[1].append(makeBatch(), acks: -1, timeoutMs: 60_000, nowMs: 0)
    // Neither follower fetches; the leader drops both from the ISR.
    let shrink = try #require(
      await trio[1].isrChangeProposal(nowMs: 5_000, replicaLagTimeMaxMs: 2_000))
    #expect(shrink.newIsr == [1])
    #expect(!pending.isSettled)
    await trio[1].isrChangeCompleted(
      newIsr: [1], partitionEpoch: shrink.partitionEpoch + 1, error: .none)
    #expect(await pending.outcome().errorCode == .notEnoughReplicasAfterAppend)
    #expect(try await committed(trio, 1, 3))
    await trio.shutdown()
  }

  @Test func aNewLeaderTruncatesTheOldLeadersDivergentTail() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    let first = await trio[1].append(makeBatch(seed: 1), acks: -1, timeoutMs: 60_000, nowMs: 0)
    try await trio.pumpUntilQuiet()
    #expect(await first.outcome().errorCode == .none)
    // Leader 1 is cut off and writes a tail nobody copies (acks=1).
    _ = await trio[1].append(makeBatch(records: 4, seed: 2), acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(await trio.state(1).logEndOffset == 7)
    // Broker 2 becomes leader of epoch 2 without broker 1 and writes its own batch.
    await trio.elect(2, leaderEpoch: 2, isr: [2, 3], skipping: [1])
    _ = await trio[2].append(makeBatch(records: 2, seed: 3), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.pump(3)
    try await trio.pump(3)
    #expect(try await committed(trio, 2, 5))
    // Broker 1 learns it is a follower: it truncates its tail to where epoch 1 ends on the
    // new leader (offset 3), not to its high watermark, then copies the new data.
    await trio[1].applyLeadership(trio.leadership, nowMs: 0)
    #expect(try await trio.pump(1) == .truncated(logEndOffset: 3))
    #expect(try await trio.pump(1) == .appended(logEndOffset: 5))
    let followerCaughtUp = try await eventually {
      try await trio.pump(1)
      return await trio.state(1).highWatermark == 5
    }
    #expect(followerCaughtUp)
    let logs = [
      try await trio.closeAndReadLog(1), try await trio.closeAndReadLog(2),
      try await trio.closeAndReadLog(3),
    ]
    #expect(logs[0] == logs[1])
    #expect(logs[1] == logs[2])
    // The committed batch survived; the new leader's batch follows it.
    let firstHeader = try RecordBatchHeader(parsing: logs[0])
    #expect(firstHeader.partitionLeaderEpoch == 1)
    #expect(firstHeader.recordCount == 3)
    let second = try RecordBatchHeader(
      parsing: Array(logs[0].dropFirst(firstHeader.totalByteCount)))
    #expect(second.partitionLeaderEpoch == 2)
    #expect(second.baseOffset == 3)
    await trio.shutdown()
  }

  @Test func aLeaderReplacedBeforeWritingDoesNotDivergeForever() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    _ = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.pumpUntilQuiet()
    // Broker 3 leads epoch 2 and writes nothing; broker 1, which never heard of epoch 2,
    // leads epoch 3.
    await trio.elect(3, leaderEpoch: 2, skipping: [1])
    await trio.elect(1, leaderEpoch: 3)
    _ = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 0)
    // Broker 3's newest batch is of epoch 1, which the leader knows: no divergence.
    #expect(await trio[3].followerFetchState()?.lastFetchedEpoch == 1)
    #expect(try await trio.pump(3) == .appended(logEndOffset: 6))
    await trio.shutdown()
  }

  @Test func leaderEpochsAreCheckedOnEveryFetch() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    await trio.elect(1, leaderEpoch: 4)
    func follow(currentLeaderEpoch: Int32) async -> FollowerReadOutcome {
      await trio[1].readForFollower(
        FollowerFetch(
          replicaID: 2, fetchOffset: 0, lastFetchedEpoch: -1,
          currentLeaderEpoch: currentLeaderEpoch, logStartOffset: 0, maxBytes: 1_000),
        nowMs: 0)
    }
    #expect(await follow(currentLeaderEpoch: 3).errorCode == .fencedLeaderEpoch)
    #expect(await follow(currentLeaderEpoch: 5).errorCode == .unknownLeaderEpoch)
    #expect(await follow(currentLeaderEpoch: 4).errorCode == .none)
    #expect(await follow(currentLeaderEpoch: -1).errorCode == .none)
    let fenced = await trio[1].read(from: 0, maxBytes: 1_000, currentLeaderEpoch: 2)
    #expect(fenced.errorCode == .fencedLeaderEpoch)
    let unknown = await trio[1].read(from: 0, maxBytes: 1_000, currentLeaderEpoch: 9)
    #expect(unknown.errorCode == .unknownLeaderEpoch)
    let current = await trio[1].read(from: 0, maxBytes: 1_000, currentLeaderEpoch: 4)
    #expect(current.errorCode == .none)
    #expect(current.currentLeader == FetchResponse.LeaderIdAndEpoch(leaderId: 1, leaderEpoch: 4))
    #expect(trio[1].leaderEpoch == 4)
    // A stale leadership (older leader epoch) is ignored.
    var stale = trio.leadership
    stale.leader = 3
    stale.leaderEpoch = 3
    stale.partitionEpoch += 5
    await trio[1].applyLeadership(stale, nowMs: 0)
    #expect(await trio[1].role == .leader(epoch: 4))
    await trio.shutdown()
  }

  @Test func followersRefuseProducesAndConsumerReads() async throws {
    let trio = try ReplicaTrio()
    // Before any leadership a cluster replica is a leaderless follower.
    #expect(await trio[2].role == .follower(leader: -1, epoch: -1))
    #expect(await trio[2].followerFetchState() == nil)
    await trio.elect(1, leaderEpoch: 1)
    #expect(await trio[2].role == .follower(leader: 1, epoch: 1))
    let refused = await trio[2].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(refused.written.errorCode == .notLeaderOrFollower)
    let read = await trio[2].read(from: 0, maxBytes: 1_000)
    #expect(read.errorCode == .notLeaderOrFollower)
    #expect(read.currentLeader == FetchResponse.LeaderIdAndEpoch(leaderId: 1, leaderEpoch: 1))
    // A follower does not serve other followers either.
    let fetched = await trio[2].readForFollower(
      FollowerFetch(
        replicaID: 3, fetchOffset: 0, lastFetchedEpoch: -1, currentLeaderEpoch: 1,
        logStartOffset: 0, maxBytes: 1_000), nowMs: 0)
    #expect(fetched.errorCode == .notLeaderOrFollower)
    // A leader whose session expired refuses produces until it is back.
    await trio[1].setLeaderSessionValid(false)
    let expired = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(expired.written.errorCode == .notLeaderOrFollower)
    #expect(await trio[1].isrChangeProposal(nowMs: 99_999, replicaLagTimeMaxMs: 1) == nil)
    await trio[1].setLeaderSessionValid(true)
    let back = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(back.written.errorCode == .none)
    await trio.shutdown()
  }

  @Test func steppingDownFailsWaitingAcksAllProducers() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    let pending = await trio[1].append(makeBatch(), acks: -1, timeoutMs: 60_000, nowMs: 0)
    #expect(pending.awaitsCommit)
    await trio.elect(2, leaderEpoch: 2)
    #expect(await pending.outcome().errorCode == .notLeaderOrFollower)
    #expect(await trio[1].role == .follower(leader: 2, epoch: 2))
    // Its fetch offset is durable now: everything it wrote as leader is flushed.
    let state = await trio.state(1)
    #expect(state.durableEndOffset == state.logEndOffset)
    await trio.shutdown()
  }

  @Test func idempotentProducerDuplicatesGapsAndFencedEpochs() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1, isr: [1], minInsyncReplicas: 1)
    let leader = trio[1]
    let first = producerBatch(producerId: 7, baseSequence: 0, records: 2)
    #expect(await leader.append(first, acks: 1, timeoutMs: 0, nowMs: 0).written.baseOffset == 0)
    _ = await leader.append(makeBatch(records: 3), acks: 1, timeoutMs: 0, nowMs: 0)
    let second = producerBatch(producerId: 7, baseSequence: 2, records: 2)
    #expect(await leader.append(second, acks: 1, timeoutMs: 0, nowMs: 0).written.baseOffset == 5)
    // A retry of the first batch: its original offset, nothing appended.
    let retry = await leader.append(first, acks: -1, timeoutMs: 5_000, nowMs: 0)
    #expect(retry.written.errorCode == .none)
    #expect(retry.written.baseOffset == 0)
    #expect(await retry.outcome().baseOffset == 0)
    #expect(await trio.state(1).logEndOffset == 7)
    // A gap in the sequence.
    let gap = producerBatch(producerId: 7, baseSequence: 9)
    #expect(
      await leader.append(gap, acks: 1, timeoutMs: 0, nowMs: 0).written.errorCode
        == .outOfOrderSequenceNumber)
    // A new producer epoch fences the old one.
    let newEpoch = producerBatch(producerId: 7, producerEpoch: 1, baseSequence: 0)
    #expect(await leader.append(newEpoch, acks: 1, timeoutMs: 0, nowMs: 0).written.baseOffset == 7)
    let zombie = producerBatch(producerId: 7, producerEpoch: 0, baseSequence: 4)
    #expect(
      await leader.append(zombie, acks: 1, timeoutMs: 0, nowMs: 0).written.errorCode
        == .invalidProducerEpoch)
    // A producer the partition never saw must start at sequence 0.
    let unknown = producerBatch(producerId: 8, baseSequence: 3)
    #expect(
      await leader.append(unknown, acks: 1, timeoutMs: 0, nowMs: 0).written.errorCode
        == .unknownProducerId)
    #expect(await trio.state(1).logEndOffset == 9)
    await trio.shutdown()
  }

  @Test func producerStateSurvivesReopenAndLeadershipMoves() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    let first = producerBatch(producerId: 11, baseSequence: 0, records: 3)
    let appended = await trio[1].append(first, acks: -1, timeoutMs: 60_000, nowMs: 0)
    try await trio.pumpUntilQuiet()
    #expect(await appended.outcome().baseOffset == 0)
    // The leader restarts: the state is rebuilt from its log.
    try await trio.reopen(1)
    let afterReopen = await trio[1].append(first, acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(afterReopen.written.errorCode == .none)
    #expect(afterReopen.written.baseOffset == 0)
    #expect(await trio.state(1).logEndOffset == 3)
    // Leadership moves to broker 3, which learned the producer from replicated batches.
    await trio.elect(3, leaderEpoch: 2)
    let retried = await trio[3].append(first, acks: 1, timeoutMs: 0, nowMs: 0)
    #expect(retried.written.errorCode == .none)
    #expect(retried.written.baseOffset == 0)
    let skipped = producerBatch(producerId: 11, baseSequence: 5)
    #expect(
      await trio[3].append(skipped, acks: 1, timeoutMs: 0, nowMs: 0).written.errorCode
        == .outOfOrderSequenceNumber)
    let next = producerBatch(producerId: 11, baseSequence: 3)
    #expect(await trio[3].append(next, acks: 1, timeoutMs: 0, nowMs: 0).written.baseOffset == 3)
    // And the new leader's epoch is in its cache: a follower of epoch 1 is consistent.
    try await trio.pumpUntilQuiet()
    #expect(await trio.state(2).logEndOffset == 5)
    await trio.shutdown()
  }

  @Test func followerLongPollsWakeWhenTheLeaderAppends() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    try await trio.pumpUntilQuiet()
    let follower = FetchWakeup()
    let consumer = FetchWakeup()
    trio[1].fetchWaiters.add(follower, isFollowerFetch: true)
    trio[1].fetchWaiters.add(consumer, isFollowerFetch: false)
    // Nothing new yet: the waits would block. The append (not yet committed) wakes the
    // follower's fetch only; the consumer's waits for the high watermark.
    let pending = await trio[1].append(makeBatch(), acks: -1, timeoutMs: 60_000, nowMs: 0)
    await follower.wait()
    #expect(!consumer.isSignalled)
    trio[1].fetchWaiters.remove(follower)
    #expect(try await trio.pump(2) == .appended(logEndOffset: 3))
    try await trio.pumpUntilQuiet()
    #expect(await pending.outcome().errorCode == .none)
    await consumer.wait()
    trio[1].fetchWaiters.remove(consumer)
    await trio.shutdown()
  }

  @Test func consumerFetchesWakeWhenTheLeaderStepsDown() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    let consumer = FetchWakeup()
    trio[1].fetchWaiters.add(consumer, isFollowerFetch: false)
    await trio.elect(2, leaderEpoch: 2)
    await consumer.wait()
    trio[1].fetchWaiters.remove(consumer)
    let read = await trio[1].read(from: 0, maxBytes: 1_000)
    #expect(read.errorCode == .notLeaderOrFollower)
    #expect(read.currentLeader == FetchResponse.LeaderIdAndEpoch(leaderId: 2, leaderEpoch: 2))
    await trio.shutdown()
  }

  @Test func aFollowerBehindTheLeadersLogStartRestartsItsLogThere() async throws {
    let trio = try ReplicaTrio { config in
      config.segmentBytes = 400
      config.retentionBytes = 800
    }
    await trio.elect(1, leaderEpoch: 1, isr: [1, 2], minInsyncReplicas: 1)
    for seed in 0..<12 {
      _ = await trio[1].append(makeBatch(seed: seed), acks: 1, timeoutMs: 0, nowMs: 0)
    }
    while try await trio.pump(2) != .caughtUp {}
    await trio[1].applyRetention(nowMs: PartitionLog.wallClockMs())
    let leaderStart = await trio.state(1).logStartOffset
    #expect(leaderStart > 0, "the test needs retention on the leader")
    // Follower 3 never fetched: its log (empty, at 0) is behind the leader's start.
    #expect(try await trio.pump(3) == .restarted(logEndOffset: leaderStart))
    #expect(try await trio.pump(3) != .notFollowing)
    try await trio.pumpUntilQuiet()
    let follower = await trio.state(3)
    #expect(follower.logStartOffset == leaderStart)
    #expect(follower.logEndOffset == 36)
    await trio.shutdown()
  }

  @Test func aFollowerTruncatesToTheSmallerOfBothEndsOfTheDivergingEpoch() async throws {
    let trio = try ReplicaTrio()
    // Epoch 1 on broker 1, copied by everyone.
    await trio.elect(1, leaderEpoch: 1)
    _ = await trio[1].append(makeBatch(records: 2), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.pumpUntilQuiet()
    // Epoch 2 on broker 2: it writes 4 records that only broker 2 has.
    await trio.elect(2, leaderEpoch: 2, isr: [2], minInsyncReplicas: 1, skipping: [1, 3])
    _ = await trio[2].append(makeBatch(records: 4), acks: 1, timeoutMs: 0, nowMs: 0)
    // Epoch 3 back on broker 1, which never saw epoch 2, with one new record.
    await trio.elect(1, leaderEpoch: 3, isr: [1, 3], minInsyncReplicas: 1)
    _ = await trio[1].append(makeBatch(records: 1), acks: 1, timeoutMs: 0, nowMs: 0)
    // Broker 2 asks with epoch 2 at offset 6; the leader does not know epoch 2 and answers
    // epoch 1 ending at 2, so broker 2 keeps offsets 0 and 1 only.
    #expect(try await trio.pump(2) == .truncated(logEndOffset: 2))
    #expect(try await trio.pump(2) == .appended(logEndOffset: 3))
    await trio.shutdown()
  }

  @Test func aRestartedLeaderDoesNotExposeItsUnreplicatedTail() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 1)
    _ = await trio[1].append(makeBatch(records: 3), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.pumpUntilQuiet()
    #expect(try await committed(trio, 1, 3))
    _ = await trio[1].append(makeBatch(records: 2), acks: 1, timeoutMs: 0, nowMs: 0)
    try await trio.reopen(1)
    // Its log holds offsets 0..<5, but only the ISR's fetches can commit them.
    #expect(await trio.state(1).logEndOffset == 5)
    #expect(await trio.state(1).highWatermark == 0)
    #expect(await trio[1].read(from: 3, maxBytes: 1 << 20).records.isEmpty)
    try await trio.pumpUntilQuiet()
    #expect(try await committed(trio, 1, 5))
    await trio.shutdown()
  }

  @Test func aFollowerWhoseFlushFailsDropsTheUndurableDataAndFetchesItAgain() async throws {
    let faulty = FaultyFileSystem()
    let trio = try ReplicaTrio(fileSystems: [2: faulty])
    await trio.elect(1, leaderEpoch: 1)
    _ = await trio[1].append(makeBatch(), acks: 1, timeoutMs: 0, nowMs: 0)
    faulty.update { $0.syncErrno = EIO }
    await #expect(throws: BrokerRequestError.self) { try await trio.pump(2) }
    // Its log ends where it is durable, so its next fetch offset does not overstate it.
    let afterFailure = await trio.state(2)
    #expect(afterFailure.logEndOffset == 0)
    #expect(afterFailure.durableEndOffset == 0)
    faulty.update { $0.syncErrno = nil }
    #expect(try await trio.pump(2) == .appended(logEndOffset: 3))
    await trio.shutdown()
  }

  @Test func followersRefuseDataOfAnotherEpochAndMalformedData() async throws {
    let trio = try ReplicaTrio()
    await trio.elect(1, leaderEpoch: 3)
    let follower = trio[2]
    do {
      _ = try await follower.appendAsFollower(
        stored(makeBatch(), baseOffset: 0), leaderEpoch: 2, leaderHighWatermark: 0,
        leaderLogStartOffset: 0)
      Issue.record("data of an older leader epoch was appended")
    } catch {
      #expect(error.errorCode == .fencedLeaderEpoch)
    }
    let malformed = [UInt8](repeating: 7, count: 80)
    do {
      _ = try await follower.appendAsFollower(
        malformed, leaderEpoch: 3, leaderHighWatermark: 0, leaderLogStartOffset: 0)
      Issue.record("malformed data was appended")
    } catch {
      #expect(error.errorCode == .corruptMessage)
    }
    do {
      _ = try await follower.appendAsFollower(
        stored(makeBatch(), baseOffset: 5), leaderEpoch: 3, leaderHighWatermark: 0,
        leaderLogStartOffset: 0)
      Issue.record("a batch past the log end was appended")
    } catch {
      #expect(error.errorCode == .offsetOutOfRange)
    }
    #expect(await trio.state(2).logEndOffset == 0)
    await trio.shutdown()
  }

  @Test func standaloneReplicaChecksIdempotenceAcrossReopen() async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let threadPool = NIOThreadPool(numberOfThreads: 1)
    threadPool.start()
    let topicPartition = TopicPartition(topic: "solo", partition: 0)
    func open() throws -> PartitionReplica {
      try PartitionReplica(
        topicPartition: topicPartition, directory: directory.path, logConfig: LogConfig(),
        minInsyncReplicas: 1, fileSystem: PosixFileSystem(), threadPool: threadPool,
        logger: testLogger)
    }
    var replica = try open()
    #expect(await replica.role == .standaloneLeader)
    let batch = producerBatch(producerId: 3, baseSequence: 0)
    #expect(
      await replica.append(batch, acks: -1, timeoutMs: 5_000, nowMs: 0).outcome().baseOffset == 0)
    await replica.close(.shutdown)
    replica = try open()
    let duplicate = await replica.append(batch, acks: -1, timeoutMs: 5_000, nowMs: 0)
    #expect(await duplicate.outcome().baseOffset == 0)
    #expect(await replica.offsets()?.logEndOffset == 2)
    let gap = producerBatch(producerId: 3, baseSequence: 3)
    #expect(
      await replica.append(gap, acks: 1, timeoutMs: 0, nowMs: 0).written.errorCode
        == .outOfOrderSequenceNumber)
    await replica.close(.shutdown)
    try await threadPool.shutdownGracefully()
  }
}

/// Waits (briefly) for replica `id`'s high watermark to reach `offset`: it also waits for
/// the leader's own flush, which runs on the thread pool.
func committed(_ trio: ReplicaTrio, _ id: Int32, _ offset: Int64) async throws -> Bool {
  await eventually { await trio.state(id).highWatermark == offset }
}

/// Random leader changes, isolated stale leaders writing divergent tails, and followers
/// fetching in random order: every batch acknowledged with acks=all must end up in every
/// replica's log at its acknowledged offset, and the logs must end identical.
@Suite struct ReplicationScenarioTests {
  struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var mixed = state
      mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
      mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
      return mixed ^ (mixed >> 31)
    }
  }

  /// The bytes of a batch its CRC covers (attributes through records): what a producer
  /// sent, without the offset and epoch the broker stamps.
  static func content(_ batch: [UInt8]) -> [UInt8] {
    Array(batch[RecordBatchHeader.crcCoveredStart...])
  }

  /// The batches of a log by base offset.
  static func batches(_ log: [UInt8]) throws -> [Int64: [UInt8]] {
    var result: [Int64: [UInt8]] = [:]
    var position = 0
    while position < log.count {
      let header = try RecordBatchHeader(parsing: Array(log[position...]))
      result[header.baseOffset] = Array(log[position..<position + header.totalByteCount])
      position += header.totalByteCount
    }
    return result
  }

  @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
  func acknowledgedBatchesSurviveLeaderChanges(seed: UInt64) async throws {
    var random = SplitMix64(state: seed)
    let trio = try ReplicaTrio(label: "scenario\(seed)")
    var epoch: Int32 = 1
    await trio.elect(1, leaderEpoch: epoch)
    /// A replica that missed the latest leaderships (and may believe it still leads).
    var isolated: Int32?
    var pending: [(batch: [UInt8], append: PendingAppend)] = []
    for step in 0..<300 {
      switch Int.random(in: 0..<30, using: &random) {
      case 0..<7:
        // A producer writes to whoever it believes leads: the current leader or, now and
        // then, an isolated stale one.
        var target = trio.leadership.leader
        if let isolated, Bool.random(using: &random) { target = isolated }
        let batch = makeBatch(records: Int.random(in: 1...3, using: &random), seed: step)
        let acks: Int16 = Bool.random(using: &random) ? -1 : 1
        let append = await trio[target].append(batch, acks: acks, timeoutMs: 600_000, nowMs: 0)
        if acks == -1 && append.written.errorCode == .none {
          pending.append((batch, append))
        }
      case 7..<28:
        let id = ReplicaTrio.brokerIDs.randomElement(using: &random) ?? 1
        if id != isolated {
          try await trio.pump(id)
        }
      default:
        // A new leader among the reachable replicas; maybe one replica misses it.
        if let healed = isolated, Bool.random(using: &random) {
          await trio[healed].applyLeadership(trio.leadership, nowMs: 0)
          isolated = nil
        }
        epoch += 1
        let candidates = ReplicaTrio.brokerIDs.filter { $0 != isolated }
        let leader = candidates.randomElement(using: &random) ?? 1
        var skipped: Set<Int32> = []
        if let isolated {
          skipped.insert(isolated)
        } else if Int.random(in: 0..<3, using: &random) == 0 {
          let victim = candidates.filter { $0 != leader }.randomElement(using: &random) ?? leader
          if victim != leader {
            skipped.insert(victim)
            isolated = victim
          }
        }
        await trio.elect(leader, leaderEpoch: epoch, skipping: skipped)
      }
    }
    if let isolated {
      await trio[isolated].applyLeadership(trio.leadership, nowMs: 0)
    }
    try await trio.pumpUntilQuiet()
    #expect(
      try await committed(
        trio, trio.leadership.leader, await trio.state(trio.leadership.leader).logEndOffset))
    try await trio.pumpUntilQuiet()
    var acknowledged: [(offset: Int64, content: [UInt8])] = []
    for (batch, append) in pending {
      let outcome = await append.outcome()
      if outcome.errorCode == .none {
        acknowledged.append((outcome.baseOffset, Self.content(batch)))
      } else {
        #expect(outcome.errorCode == .notLeaderOrFollower)
      }
    }
    let logs = [
      try await trio.closeAndReadLog(1), try await trio.closeAndReadLog(2),
      try await trio.closeAndReadLog(3),
    ]
    #expect(
      logs[0] == logs[1], "logs of 1 and 2 differ: \(logs[0].count) and \(logs[1].count) bytes")
    #expect(
      logs[1] == logs[2], "logs of 2 and 3 differ: \(logs[1].count) and \(logs[2].count) bytes")
    let stored = try Self.batches(logs[0])
    for (offset, content) in acknowledged {
      #expect(stored[offset].map(Self.content) == content, "acknowledged batch at \(offset)")
    }
    #expect(!acknowledged.isEmpty, "the scenario acknowledged nothing")
    await trio.shutdown()
  }
}

extension ReplicationScenarioTests {
  /// An idempotent producer (one batch in flight, retried to the current leader until it
  /// is acknowledged) while leaders change and replicas restart: the final log holds every
  /// acknowledged sequence exactly once and no sequence twice.
  @Test(arguments: [11, 12, 13, 14] as [UInt64])
  func idempotentRetriesAcrossLeaderChangesNeitherLoseNorDuplicate(seed: UInt64) async throws {
    var random = SplitMix64(state: seed)
    let trio = try ReplicaTrio(label: "idempotent\(seed)")
    var epoch: Int32 = 1
    await trio.elect(1, leaderEpoch: epoch)
    let producerId: Int64 = 100
    var nextSequence: Int32 = 0
    var inFlight: (batch: [UInt8], records: Int, append: PendingAppend?)?
    var acknowledged: [Int32: Int64] = [:]
    for step in 0..<250 {
      switch Int.random(in: 0..<30, using: &random) {
      case 0..<8:
        if let current = inFlight, let append = current.append, append.isSettled {
          let outcome = await append.outcome()
          if outcome.errorCode == .none {
            acknowledged[nextSequence] = outcome.baseOffset
            nextSequence += Int32(current.records)
            inFlight = nil
          } else {
            inFlight?.append = nil
          }
        }
        if inFlight == nil {
          let records = Int.random(in: 1...3, using: &random)
          inFlight = (
            producerBatch(
              producerId: producerId, baseSequence: nextSequence, records: records, seed: step),
            records, nil
          )
        }
        // Send (or resend, as after a request timeout) to the current leader.
        if let current = inFlight, current.append?.isSettled != false || Bool.random(using: &random)
        {
          let append = await trio[trio.leadership.leader].append(
            current.batch, acks: -1, timeoutMs: 600_000, nowMs: 0)
          inFlight?.append = append.written.errorCode == .none ? append : nil
        }
      case 8..<27:
        try await trio.pump(ReplicaTrio.brokerIDs.randomElement(using: &random) ?? 1)
      case 27:
        let id = ReplicaTrio.brokerIDs.randomElement(using: &random) ?? 1
        try await trio.reopen(id)
      default:
        epoch += 1
        await trio.elect(
          ReplicaTrio.brokerIDs.randomElement(using: &random) ?? 1, leaderEpoch: epoch)
      }
    }
    try await trio.pumpUntilQuiet()
    try await trio.pumpUntilQuiet()
    let logs = [
      try await trio.closeAndReadLog(1), try await trio.closeAndReadLog(2),
      try await trio.closeAndReadLog(3),
    ]
    #expect(logs[0] == logs[1], "logs of 1 and 2 differ")
    #expect(logs[1] == logs[2], "logs of 2 and 3 differ")
    var sequences: [Int32: Int64] = [:]
    for (offset, batch) in try Self.batches(logs[0]) {
      let header = try RecordBatchHeader(parsing: batch)
      #expect(sequences[header.baseSequence] == nil, "sequence \(header.baseSequence) twice")
      sequences[header.baseSequence] = offset
    }
    for (sequence, offset) in acknowledged {
      #expect(sequences[sequence] == offset, "acknowledged sequence \(sequence) at \(offset)")
    }
    #expect(acknowledged.count > 2, "the scenario acknowledged too little")
    await trio.shutdown()
  }
}
