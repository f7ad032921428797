import Foundation
import NIOConcurrencyHelpers
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusVerification

/// What one poll of the metaservers showed about the faulted node.
struct DrillObservation {
  /// Printed on the timeline whenever it changes.
  var state: String
  /// Set once the cluster reacted to the fault (fenced, ISR shrunk, leaderless quorum).
  var detected: String?
  /// Set once another node leads.
  var newLeader: String?
}

extension FailoverDrill {
  /// Polls until the fault is detected, a new leader is seen and the first write after the
  /// fault succeeded, or until the recovery timeout (a FAIL reason then).
  func waitForFailover(
    _ target: DrillTarget, faultAtMs: Int64, workload: DrillWorkloadRun, poll: MetaClient,
    probe: MetadataProbe?
  ) async {
    let deadlineMs = faultAtMs + recoveryTimeoutMs
    var detected = false
    var newLeaderSeen = false
    var firstWriteSeen = false
    var lastState: String?
    // The start of the last poll that still showed no new leader: an acknowledgement before
    // it may be the old leader's, after it only the new leader's.
    var oldLeaderSeenAtMs = faultAtMs
    while !isInterrupted {
      let pollStartMs = unixNowMs()
      let observation =
        kind.targetsBroker
        ? try? await observeBroker(target, poll: poll)
        : try? await observeQuorum(target, poll: poll)
      if let observation {
        if observation.state != lastState {
          timeline.record("observed: \(observation.state)")
          lastState = observation.state
        }
        if !detected, let reason = observation.detected {
          detected = true
          timeline.record("fault detected: \(reason)")
        }
        if !newLeaderSeen, let leader = observation.newLeader {
          newLeaderSeen = true
          timeline.record(leader)
        }
      }
      if !newLeaderSeen { oldLeaderSeenAtMs = pollStartMs }
      if newLeaderSeen && !firstWriteSeen,
        let write = firstWrite(
          atOrAfterMs: max(faultAtMs + Self.inFlightAckMs, oldLeaderSeenAtMs),
          workload: workload, probe: probe)
      {
        firstWriteSeen = true
        timeline.record("first successful write: \(write.text)", atMs: write.atMs)
        unavailabilityMs = write.previousMs.map { write.atMs - $0 } ?? (write.atMs - faultAtMs)
      }
      if detected && newLeaderSeen && firstWriteSeen { return }
      if unixNowMs() >= deadlineMs {
        let missing =
          !detected
          ? "the fault was not detected (last seen: \(lastState ?? "no answer"))"
          : !newLeaderSeen
            ? "no new leader (last seen: \(lastState ?? "no answer"))"
            : "no successful write after the new leader"
        fail("no recovery within \(options.recoveryTimeoutS) s of the fault: \(missing)")
        return
      }
      try? await Task.sleep(for: .milliseconds(Self.pollIntervalMs))
    }
  }

  /// The first successful write at or after `atOrAfterMs`: an acknowledgement on the drill's
  /// partition, or for the metaserver drill a metadata write of the probe; with the previous
  /// success (the start of the gap).
  private func firstWrite(
    atOrAfterMs boundMs: Int64, workload: DrillWorkloadRun, probe: MetadataProbe?
  ) -> (atMs: Int64, previousMs: Int64?, text: String)? {
    if let probe {
      guard let found = probe.firstSuccess(atOrAfterMs: boundMs) else { return nil }
      return (
        found.atMs, found.previousMs,
        "metadata change (AlterConfigs on \(probe.topic)) committed by the new quorum leader"
      )
    }
    let history = workload.history
    guard
      let ack = history.firstAck(
        partition: options.partition, atOrAfterUs: history.timeUs(ofUnixMilliseconds: boundMs))
    else { return nil }
    let previous = history.events.last {
      $0.kind == .ack && $0.partition == options.partition && $0.timeUs < ack.timeUs
    }
    return (
      history.unixMilliseconds(ofUs: ack.timeUs),
      previous.map { history.unixMilliseconds(ofUs: $0.timeUs) },
      "acks=all write to \(partitionName) at offset \(ack.offset ?? -1) (\(ack.value ?? "?"))"
    )
  }

  func observeBroker(_ target: DrillTarget, poll: MetaClient) async throws -> DrillObservation {
    let description = try await poll.describeTopic(topic)
    let brokers = try await poll.describeCluster().brokers
    guard let partition = description.partitions.first(where: { $0.partition == options.partition })
    else {
      throw DrillSetupError("\(partitionName) is gone")
    }
    let registration = brokers.first { $0.brokerID == target.id }
    let fenced = registration?.fenced ?? true
    var state =
      "\(partitionName) leader \(partition.leader) epoch \(partition.leaderEpoch), isr "
      + "\(partition.isr)"
    if fenced { state += ", \(target.name) fenced" }
    var observation = DrillObservation(state: state)
    if fenced {
      observation.detected = "\(target.name) fenced by the metaservers"
    } else if partition.leader != target.id {
      observation.detected = "leadership of \(partitionName) moved away from \(target.name)"
    } else if !partition.isr.contains(target.id) {
      observation.detected = "\(target.name) left the ISR of \(partitionName)"
    }
    if partition.leader >= 0 && partition.leader != target.id {
      observation.newLeader = "new leader broker \(partition.leader) epoch \(partition.leaderEpoch)"
    }
    return observation
  }

  func observeQuorum(_ target: DrillTarget, poll: MetaClient) async throws -> DrillObservation {
    let status = try await poll.quorumStatus()
    let leader = status.leaderID < 0 ? "none" : "metaserver \(status.leaderID)"
    var observation = DrillObservation(state: "quorum leader \(leader), term \(status.term)")
    if status.leaderID != target.id {
      observation.detected =
        status.leaderID < 0
        ? "the quorum lost its leader (term \(status.term))"
        : "metaserver \(status.leaderID) took over (term \(status.term))"
    }
    if status.leaderID >= 0 && status.leaderID != target.id {
      observation.newLeader = "new leader metaserver \(status.leaderID) term \(status.term)"
    }
    return observation
  }

  // MARK: - Health

  /// Nil when the cluster is whole: a quorum leader with every voter in contact and caught
  /// up, every partition of the topic led with its full ISR and no replica's broker fenced,
  /// and (with a broker `target`) that broker acting as the role the metadata gives it.
  /// Otherwise the first thing missing. With `healStartedMs`, a metaserver target counts as
  /// back only once the leader heard from it after that time (a dead member's last contact
  /// stays recent for a while).
  func health(_ poll: MetaClient, target: DrillTarget?, healStartedMs: Int64? = nil)
    async throws -> String?
  {
    let status = try await poll.quorumStatus()
    let sinceHealMs = healStartedMs.map { unixNowMs() - $0 }
    guard status.leaderID >= 0 else { return "the metadata quorum has no leader" }
    for voter in status.voters where voter.nodeID != status.leaderID {
      if voter.lastContactMs < 0 || voter.lastContactMs > Self.voterContactMaxMs {
        return "metaserver \(voter.nodeID) is out of contact with the quorum leader"
      }
      if let sinceHealMs, target?.role == "metaserver", voter.nodeID == target?.id,
        voter.lastContactMs >= sinceHealMs
      {
        return "metaserver \(voter.nodeID) has not been heard from since the recovery started"
      }
      if voter.lag > Self.voterLagMax {
        return "metaserver \(voter.nodeID) lags \(voter.lag) entries behind the quorum leader"
      }
    }
    let description = try await poll.describeTopic(topic)
    let brokers = try await poll.describeCluster().brokers
    let fenced = Set(brokers.filter(\.fenced).map(\.brokerID))
    for partition in description.partitions {
      let name = "\(topic)-\(partition.partition)"
      guard partition.leader >= 0 else { return "\(name) has no leader" }
      if Set(partition.isr) != Set(partition.replicas) {
        return "\(name) has isr \(partition.isr) of replicas \(partition.replicas)"
      }
      if let broker = partition.replicas.first(where: fenced.contains) {
        return "broker \(broker) (replica of \(name)) is fenced"
      }
    }
    guard let target, target.role == "broker", let address = target.address,
      let partition = description.partitions.first(where: { $0.partition == options.partition })
    else { return nil }
    let expected: ReplicaStatusRole = partition.leader == target.id ? .leader : .follower
    let answer = await ReplicaStatusClient.ask(
      address: address,
      topics: [.init(name: topic, partitions: [options.partition])], timeoutMs: 1_000)
    guard case .answered(let response) = answer else {
      return "\(target.name) does not answer ReplicaStatus"
    }
    let reported = response.topics.first { $0.name == topic }?.partitions.first {
      $0.partition == options.partition
    }
    guard let reported, reported.errorCode == .none else {
      return "\(target.name) does not report \(partitionName) yet"
    }
    guard reported.role == expected else {
      return "\(target.name) acts as \(reported.role) of \(partitionName); the metadata says "
        + "\(expected)"
    }
    return nil
  }

  /// A follower the quorum leader has not heard from for longer is not back.
  static let voterContactMaxMs: Int64 = 1_000
  /// A follower further behind than this many entries has not caught up.
  static let voterLagMax: Int64 = 50
}

/// Writes to the metadata quorum every 100 ms (alternating `retention.ms` of a probe topic)
/// and records when each write succeeded: how the metaserver drill sees metadata writes stop
/// and resume.
final class MetadataProbe: Sendable {
  let topic: String
  private let successes = NIOLockedValueBox<[Int64]>([])
  private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

  init(topic: String) {
    self.topic = topic
  }

  func start(_ client: MetaClient) {
    let running = Task { [successes, topic] in
      var flip = false
      while !Task.isCancelled {
        flip.toggle()
        let change = AlterConfigsRequest.Change(
          key: "retention.ms", value: flip ? "604800001" : "604800000")
        if (try? await client.alterConfigs(topic: topic, changes: [change])) != nil {
          successes.withLockedValue { $0.append(unixNowMs()) }
        }
        try? await Task.sleep(for: .milliseconds(FailoverDrill.metadataProbeIntervalMs))
      }
      await client.close()
    }
    task.withLockedValue { $0 = running }
  }

  func stop() async {
    let running = task.withLockedValue { $0 }
    running?.cancel()
    await running?.value
  }

  /// The first success at or after `atOrAfterMs`, and the one before it.
  func firstSuccess(atOrAfterMs boundMs: Int64) -> (atMs: Int64, previousMs: Int64?)? {
    successes.withLockedValue { times in
      guard let index = times.firstIndex(where: { $0 >= boundMs }) else { return nil }
      return (times[index], index > 0 ? times[index - 1] : nil)
    }
  }
}
