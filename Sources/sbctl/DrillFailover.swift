import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import StreamBusClient
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusVerification

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

enum DrillKind: String, Sendable {
  case brokerFailover = "broker-failover"
  case metaserverFailover = "metaserver-failover"
  case partition

  var targetsBroker: Bool { self != .metaserverFailover }
}

/// The node a drill faults: a partition's leader broker or the metadata quorum's leader.
struct DrillTarget: Sendable {
  var role: String
  var id: Int32
  /// Broker: its client listener; metaserver: its API listener (host:port).
  var address: String?
  var raftAddress: String?
  /// Local mode (or remote mode with --cluster-dir): the process, when it runs.
  var pid: Int32?
  var node: LocalNode?
  /// Broker: the partition's leader epoch; metaserver: the Raft term.
  var epoch: Int64

  var name: String { "\(role) \(id)" }
  /// As `sbctl local start --node` takes it.
  var nodeName: String { "\(role)-\(id)" }

  var host: String? { address.flatMap { try? HostPort(parsing: $0) }?.host }
  var port: Int? { address.flatMap { try? HostPort(parsing: $0) }.map { Int($0.port) } }
}

/// One failover drill: the workload, the fault, what was observed, the verdict.
///
/// Everything on the timeline is observed, not assumed: the metaservers' view is polled every
/// `pollIntervalMs` (leaders, ISR, fencing, quorum), writes are the workload's
/// acknowledgements at the time they arrived, metadata writes the probe's answers.
final class FailoverDrill: @unchecked Sendable {
  static let pollIntervalMs = 50
  /// An acknowledgement this soon after the fault may still be the old leader's answer.
  static let inFlightAckMs: Int64 = 50
  static let metadataProbeIntervalMs = 100
  /// How long a drill waits for the cluster to be whole before it starts (else exit 2).
  static let healthyBeforeTimeoutMs: Int64 = 30_000

  let kind: DrillKind
  let options: DrillFaultOptions
  let clusterDirectory: URL?
  let brokers: [HostPort]
  let metaserverList: String
  let timeline: DrillTimeline
  let interrupted = NIOLockedValueBox(false)
  // Only the drill's own sequential flow touches these (one task at a time).
  var reasons: [String] = []
  var unavailabilityMs: Int64?

  var isRemote: Bool { options.faultCommand != nil }
  var topic: String { options.topic }
  var partitionName: String { "\(options.topic)-\(options.partition)" }
  var probeTopic: String { "\(options.topic)-metadata-probe" }

  init(kind: DrillKind, options: DrillFaultOptions, clusterDir: String?) throws {
    try options.check()
    self.kind = kind
    self.options = options
    let cluster = try loadLocalCluster(clusterDir)
    clusterDirectory = clusterDir.map {
      URL(fileURLWithPath: $0, isDirectory: true).standardizedFileURL
    }
    if options.faultCommand == nil && cluster == nil {
      throw DrillSetupError(
        "local mode needs the cluster: pass --cluster-dir D (a `sbctl local` cluster), or "
          + "--fault-command (remote mode)")
    }
    let environment = ProcessInfo.processInfo.environment
    func nonEmpty(_ text: String?) -> String? {
      guard let text, !text.allSatisfy(\.isWhitespace) else { return nil }
      return text
    }
    guard
      let brokerText = nonEmpty(options.bootstrap) ?? nonEmpty(cluster?.brokerList)
        ?? nonEmpty(environment["SB_BROKERS"])
    else {
      throw DrillSetupError("no brokers: pass --bootstrap, --cluster-dir or set SB_BROKERS")
    }
    guard
      let metaText = nonEmpty(options.metaservers) ?? nonEmpty(cluster?.metaserverAPIList)
        ?? nonEmpty(environment["SB_METASERVERS"])
    else {
      throw DrillSetupError(
        "no metaservers: pass --metaservers, --cluster-dir or set SB_METASERVERS")
    }
    brokers = try parseDrillBrokers(brokerText, flag: "--bootstrap")
    metaserverList = metaText
    timeline = DrillTimeline(originMs: unixNowMs())
  }

  func metaConfiguration(requestTimeoutMs: Int64, attemptTimeoutMs: Int64? = nil) throws
    -> MetaClientConfiguration
  {
    var configuration: MetaClientConfiguration
    do {
      configuration = try makeMetaClientConfiguration(
        list: metaserverList, requestTimeoutMs: requestTimeoutMs)
    } catch let error as ValidationError {
      throw DrillSetupError(error.message)
    }
    if let attemptTimeoutMs {
      configuration.attemptTimeoutMs = min(attemptTimeoutMs, requestTimeoutMs)
    }
    configuration.clientID = "sbctl-drill"
    return configuration
  }

  var localCluster: LocalCluster? {
    clusterDirectory.flatMap { try? LocalCluster.load(from: $0) }
  }

  // MARK: - The drill

  func run() async throws -> Int32 {
    // Polls get short timeouts: a dead metaserver must not hold up the next observation.
    let pollConfiguration = try metaConfiguration(requestTimeoutMs: 1_000, attemptTimeoutMs: 400)
    return try await withMetaClient(try metaConfiguration(requestTimeoutMs: 10_000)) { setup in
      try await withMetaClient(pollConfiguration) { poll in
        try await drill(setup: setup, poll: poll)
      }
    }
  }

  private func drill(setup: MetaClient, poll: MetaClient) async throws -> Int32 {
    do {
      try await prepareTopics(setup)
    } catch let error as MetaClientError {
      throw DrillSetupError("cannot prepare topic \(topic): \(error)")
    }
    if let problem = await waitUntil(
      timeoutMs: Self.healthyBeforeTimeoutMs, { try await self.health(poll, target: nil) })
    {
      throw DrillSetupError("the cluster is not healthy before the fault: \(problem)")
    }
    let signals = StopSignals { [interrupted] in interrupted.withLockedValue { $0 = true } }
    defer { withExtendedLifetime(signals) {} }

    // Started before the warmup, so the gap it measures starts at a write before the fault.
    let probe = kind == .metaserverFailover ? MetadataProbe(topic: probeTopic) : nil
    probe?.start(
      MetaClient(
        configuration: try metaConfiguration(requestTimeoutMs: 2_000, attemptTimeoutMs: 500)))
    let workload = DrillWorkloadRun(
      config: drillClientConfig(
        brokers: brokers, requestTimeoutMs: options.workload.requestTimeoutMs),
      topic: topic, options: options.workload, durationMs: nil)
    try await workload.start()
    timeline.record(
      "workload started: \(options.workload.producers) acks=all producers, "
        + "\(options.workload.rate) values/s on \(topic)", atMs: workload.startedAtMs)
    await pause(seconds: options.warmupS)
    let warmupAcks = workload.history.firstAck(partition: options.partition, atOrAfterUs: 0)
    var target: DrillTarget?
    if warmupAcks == nil {
      fail("no acknowledged write on \(partitionName) during the \(options.warmupS) s warmup")
    } else {
      do {
        target = try await resolveTarget(setup)
      } catch {
        fail("cannot find the fault's target: \(error)")
      }
    }
    if let target, !isInterrupted {
      await faultAndRecover(target, workload: workload, poll: poll, probe: probe)
    }
    await probe?.stop()
    if isInterrupted { fail("interrupted by a signal") }
    if let probe {
      _ = try? await setup.deleteTopic(probe.topic)
    }
    workload.stopSending()
    timeline.record("workload stopping: \(workload.workload.progress)")
    let report = await workload.finish(name: "drill-\(kind.rawValue)")
    timeline.record(
      "checked: \(report.isPass ? "VALID" : "INVALID"), \(report.acknowledged) acknowledged, "
        + "\(report.recordsRead) read back")
    if !report.isPass {
      fail("the workload check failed: " + report.violations.prefix(3).joined(separator: "; "))
    }
    let result = DrillResult(
      drill: kind.rawValue, reasons: reasons, mode: isRemote ? "remote" : "local", target: target,
      topic: topic, partition: options.partition, timeline: timeline.sorted,
      unavailabilityMs: unavailabilityMs, workload: report, originMs: timeline.originMs)
    switch options.output {
    case .json: writeStandardOutput(result.json().rendered())
    case .text: result.textLines().forEach(writeStandardOutput)
    }
    return result.isPass ? DrillExit.pass : DrillExit.fail
  }

  private func faultAndRecover(
    _ target: DrillTarget, workload: DrillWorkloadRun, poll: MetaClient, probe: MetadataProbe?
  ) async {
    guard let faultAtMs = await injectFault(target) else {
      // The fault may be half applied (a command that failed midway): heal anyway.
      if isRemote && options.recoverCommand != nil { await heal(target) }
      return
    }
    await waitForFailover(
      target, faultAtMs: faultAtMs, workload: workload, poll: poll, probe: probe)
    let holdUntilMs = faultAtMs + Int64(options.faultDurationS * 1_000)
    await pause(seconds: Double(max(0, holdUntilMs - unixNowMs())) / 1_000)
    let healStartedMs = unixNowMs()
    await heal(target)
    let problem = await waitUntil(timeoutMs: recoveryTimeoutMs) {
      try await self.health(poll, target: target, healStartedMs: healStartedMs)
    }
    if let problem, isInterrupted {
      timeline.record("interrupted before the cluster healed (last seen: \(problem))")
    } else if let problem {
      fail(
        "the cluster did not heal within \(options.recoveryTimeoutS) s of the recovery: \(problem)")
    } else {
      timeline.record(
        "recovered: "
          + (kind.targetsBroker
            ? "every partition of \(topic) has a leader and its full ISR; \(target.name) is "
              + "back as a replica"
            : "every metaserver is back in the quorum and caught up")
          + " (\(DrillTimeline.seconds(unixNowMs() - healStartedMs)) after the recovery started)")
    }
    await pause(seconds: options.settleS)
  }

  var recoveryTimeoutMs: Int64 { Int64(options.recoveryTimeoutS * 1_000) }
  var isInterrupted: Bool { interrupted.withLockedValue { $0 } }

  func fail(_ reason: String) {
    reasons.append(reason)
    timeline.record("FAIL: \(reason)")
  }

  /// Sleeps, in short steps so a signal ends it early.
  func pause(seconds: Double) async {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1_000))
    while ContinuousClock.now < deadline && !isInterrupted {
      try? await Task.sleep(for: min(.milliseconds(100), deadline - ContinuousClock.now))
    }
  }

  /// Polls `check` (nil = done, else what is missing) every poll interval until it is done;
  /// returns nil then, or the last problem at the timeout (or on a signal).
  func waitUntil(timeoutMs: Int64, _ check: () async throws -> String?) async -> String? {
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var problem = "no answer yet"
    while true {
      do {
        guard let missing = try await check() else { return nil }
        problem = missing
      } catch {
        problem = "\(error)"
      }
      if ContinuousClock.now >= deadline || isInterrupted { return problem }
      try? await Task.sleep(for: .milliseconds(Self.pollIntervalMs))
    }
  }

  // MARK: - Setup

  private func prepareTopics(_ client: MetaClient) async throws {
    let brokerCount = try await client.describeCluster().brokers.count
    let replicationFactor = Int16(max(1, min(3, brokerCount)))
    if try await createIfMissing(
      topic, partitions: max(3, options.partition + 1), replicationFactor: replicationFactor,
      client: client)
    {
      timeline.record(
        "created topic \(topic) (\(max(3, options.partition + 1)) partitions, replication "
          + "factor \(replicationFactor))")
    }
    do {
      try await LocalBrokers.waitUntilServed(topic, client: client, timeoutMs: 30_000)
    } catch let error as LocalClusterError {
      throw DrillSetupError(error.message)
    }
    let description = try await client.describeTopic(topic)
    guard description.partitions.contains(where: { $0.partition == options.partition }) else {
      throw DrillSetupError(
        "topic \(topic) has no partition \(options.partition) (it has "
          + "\(description.partitions.count))")
    }
    if kind == .metaserverFailover {
      _ = try await createIfMissing(probeTopic, partitions: 1, replicationFactor: 1, client: client)
    }
  }

  /// True when it created the topic.
  private func createIfMissing(
    _ name: String, partitions: Int32, replicationFactor: Int16, client: MetaClient
  ) async throws -> Bool {
    do {
      _ = try await client.describeTopic(name)
      return false
    } catch let error as MetaClientError where error.errorCode == .unknownTopicOrPartition {
      do {
        _ = try await client.createTopic(
          name, partitions: partitions, replicationFactor: replicationFactor)
      } catch let error as MetaClientError where error.errorCode == .topicAlreadyExists {
        return false
      }
      return true
    }
  }

  private func resolveTarget(_ client: MetaClient) async throws -> DrillTarget {
    let cluster = localCluster
    if kind.targetsBroker {
      let description = try await client.describeTopic(topic)
      guard
        let partition = description.partitions.first(where: { $0.partition == options.partition }),
        partition.leader >= 0
      else {
        throw DrillSetupError("\(partitionName) has no leader")
      }
      let registered = try await client.describeCluster().brokers.first {
        $0.brokerID == partition.leader
      }
      let node = cluster?.brokers.first { $0.id == Int(partition.leader) }
      return DrillTarget(
        role: "broker", id: partition.leader,
        address: registered.flatMap(ReplicaStatusClient.clientAddress(of:)) ?? node?.clientAddress,
        raftAddress: nil, pid: node.flatMap { LocalProcesses.isRunning($0) ? $0.pid : nil },
        node: node, epoch: Int64(partition.leaderEpoch))
    }
    let status = try await client.quorumStatus()
    guard status.leaderID >= 0 else { throw DrillSetupError("the metadata quorum has no leader") }
    let member = status.voters.first { $0.nodeID == status.leaderID }
    let node = cluster?.metaservers.first { $0.id == Int(status.leaderID) }
    return DrillTarget(
      role: "metaserver", id: status.leaderID,
      address: member.map(\.apiAddress).flatMap { $0.isEmpty ? nil : $0 } ?? node?.apiAddress,
      raftAddress: member?.raftAddress ?? node?.raftAddress,
      pid: node.flatMap { LocalProcesses.isRunning($0) ? $0.pid : nil }, node: node,
      epoch: status.term)
  }

  // MARK: - Fault and recovery actions

  /// The fault's time, or nil when it could not be injected (the reason is recorded).
  private func injectFault(_ target: DrillTarget) async -> Int64? {
    if let command = options.faultCommand {
      let startedMs = unixNowMs()
      let outcome = await DrillShell.run(
        command, environment: commandEnvironment(target, action: "fault"),
        timeoutMs: Int64(options.commandTimeoutS * 1_000))
      guard outcome.succeeded else {
        fail(
          "fault command failed (\(outcome.summary)): \(command)\n  output: \(outcome.outputTail)")
        return nil
      }
      timeline.record(
        "fault injected: fault command (\(DrillTimeline.seconds(outcome.durationMs))): \(command)",
        atMs: startedMs)
      return startedMs
    }
    guard let pid = target.pid else {
      fail("\(target.name) is not running here (cluster.json has no live process for it)")
      return nil
    }
    let signal = kind == .partition ? SIGSTOP : SIGKILL
    let atMs = unixNowMs()
    guard kill(pid, signal) == 0 else {
      fail("cannot signal \(target.name) (pid \(pid)): errno \(errno)")
      return nil
    }
    let action = kind == .partition ? "SIGSTOP" : "kill -9"
    let role = kind == .partition ? "leader of \(partitionName), isolated" : "leader"
    timeline.record("fault injected: \(action) \(target.name) (pid \(pid), \(role))", atMs: atMs)
    return atMs
  }

  private func heal(_ target: DrillTarget) async {
    if isRemote {
      guard let command = options.recoverCommand else {
        timeline.record("no --recover-command: waiting for the cluster to heal by itself")
        return
      }
      let startedMs = unixNowMs()
      let outcome = await DrillShell.run(
        command, environment: commandEnvironment(target, action: "recover"),
        timeoutMs: Int64(options.commandTimeoutS * 1_000))
      if outcome.succeeded {
        timeline.record(
          "recovery started: recover command (\(DrillTimeline.seconds(outcome.durationMs))): "
            + command, atMs: startedMs)
      } else {
        fail(
          "recover command failed (\(outcome.summary)): \(command)\n  output: "
            + outcome.outputTail)
      }
      return
    }
    guard let pid = target.pid else { return }
    if kind == .partition {
      kill(pid, SIGCONT)
      timeline.record("recovery started: SIGCONT \(target.name) (pid \(pid))")
      return
    }
    // kill -9 is immediate, but the pid must be gone before the node starts on its ports.
    let deadline = ContinuousClock.now + .seconds(5)
    while let node = target.node, LocalProcesses.isRunning(node), ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(10))
    }
    guard let directory = clusterDirectory, var cluster = localCluster,
      let node = cluster.allNodes.first(where: { $0.name == target.nodeName })
    else {
      fail("cannot restart \(target.name): it is not in the cluster file any more")
      return
    }
    do {
      let restarted = try LocalStarter.startAgain(node, in: &cluster, root: directory)
      timeline.record("recovery started: restarted \(target.name) (pid \(restarted.pid))")
    } catch {
      fail("cannot restart \(target.name): \(error)")
    }
  }

  /// The `SB_DRILL_*` variables of a fault or recover command (docs/sbctl.md, "Drills").
  func commandEnvironment(_ target: DrillTarget, action: String) -> [String: String] {
    let prefix = target.role == "broker" ? "SB_DRILL_BROKER" : "SB_DRILL_METASERVER"
    var environment = [
      "SB_DRILL": kind.rawValue, "SB_DRILL_ACTION": action, "SB_DRILL_TOPIC": topic,
      "SB_DRILL_PARTITION": "\(options.partition)", "SB_DRILL_NODE": target.nodeName,
      "SB_DRILL_FAULT_DURATION_S": "\(options.faultDurationS)",
      "SB_BROKERS": brokers.map(\.description).joined(separator: ","),
      "SB_METASERVERS": metaserverList,
      "\(prefix)_ID": "\(target.id)",
    ]
    if let address = target.address { environment["\(prefix)_ADDRESS"] = address }
    if let host = target.host { environment["\(prefix)_HOST"] = host }
    if let port = target.port { environment["\(prefix)_PORT"] = "\(port)" }
    if let raftAddress = target.raftAddress { environment["\(prefix)_RAFT_ADDRESS"] = raftAddress }
    if let pid = target.pid { environment["\(prefix)_PID"] = "\(pid)" }
    if let clusterDirectory { environment["SB_DRILL_CLUSTER_DIR"] = clusterDirectory.path }
    if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    {
      environment["SB_DRILL_SBCTL"] = executable
    }
    return environment
  }
}
