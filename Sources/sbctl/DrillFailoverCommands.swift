import ArgumentParser
import Foundation

/// Flags of the failover drills (`broker-failover`, `metaserver-failover`, `partition`).
struct DrillFaultOptions: ParsableArguments {
  @Option(help: "Folder of a `sbctl local` cluster (local mode; may also stand before `drill`).")
  var clusterDir: String?

  @Option(help: "Topic the workload writes (created with 3 partitions when missing).")
  var topic: String = "drill"

  @Option(help: "Partition whose leader is the target, and whose acks measure unavailability.")
  var partition: Int32 = 0

  @Option(help: "Broker host:port list (default: --cluster-dir's, else $SB_BROKERS).")
  var bootstrap: String?

  @Option(help: "Metaserver host:port list (default: --cluster-dir's, else $SB_METASERVERS).")
  var metaservers: String?

  @Option(
    help: """
      Remote mode: shell command (/bin/sh -c) that injects the fault; SB_DRILL_* variables \
      name the target.
      """)
  var faultCommand: String?

  @Option(help: "Remote mode: shell command that heals the fault (restart, resume, unblock).")
  var recoverCommand: String?

  @Option(help: "How long the fault and recover commands may run, in seconds.")
  var commandTimeoutS: Double = 60

  @Option(help: "Workload before the fault, in seconds.")
  var warmupS: Double = 3

  @Option(help: "Shortest time the fault lasts, in seconds (longer until failover is seen).")
  var faultDurationS: Double = 5

  @Option(help: "Workload after the cluster healed, in seconds.")
  var settleS: Double = 3

  @Option(
    help: """
      Longest wait for a new leader and the first successful write after the fault, and \
      again for the cluster to heal after recovery, in seconds.
      """)
  var recoveryTimeoutS: Double = 30

  @Option(help: "Output format: text or json.")
  var output: DrillOutputFormat = .text

  @OptionGroup var workload: DrillWorkloadOptions

  func check() throws {
    try workload.check()
    guard partition >= 0 else { throw DrillSetupError("--partition must be at least 0") }
    for (flag, value) in [
      ("--warmup-s", warmupS), ("--fault-duration-s", faultDurationS), ("--settle-s", settleS),
    ] where !(0...86_400).contains(value) {
      throw DrillSetupError("\(flag) must be 0...86400, got \(value)")
    }
    for (flag, value) in [
      ("--recovery-timeout-s", recoveryTimeoutS), ("--command-timeout-s", commandTimeoutS),
    ] where !(value > 0 && value <= 86_400) {
      throw DrillSetupError("\(flag) must be more than 0 and at most 86400, got \(value)")
    }
    if recoverCommand != nil && faultCommand == nil {
      throw DrillSetupError("--recover-command needs --fault-command (remote mode)")
    }
  }
}

struct DrillBrokerFailoverCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "broker-failover",
    abstract: "Kill -9 a partition's leader broker under load; check failover, restart, ISR.",
    discussion: """
      Local mode kills the leader of --topic/--partition, waits for the metaservers to elect \
      a new leader and for the first acks=all write after the kill, restarts the broker \
      (after --fault-duration-s at the earliest) and waits until every partition's ISR is \
      full again. Remote mode runs --fault-command and --recover-command instead.
      """)

  @OptionGroup var options: DrillFaultOptions

  func run() async throws {
    try await runDrill {
      try await FailoverDrill(
        kind: .brokerFailover, options: options, clusterDir: options.clusterDir
      )
      .run()
    }
  }
}

struct DrillMetaserverFailoverCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "metaserver-failover",
    abstract: "Kill -9 the metadata quorum leader under load; check election and writes.",
    discussion: """
      Local mode kills the Raft leader of the metaservers, waits for a new leader and the \
      first successful metadata write (a config change on the topic TOPIC-metadata-probe, \
      written every 100 ms), restarts the metaserver and waits until every voter is back in \
      contact and caught up. The data workload runs throughout. Remote mode runs \
      --fault-command and --recover-command instead.
      """)

  @OptionGroup var options: DrillFaultOptions

  func run() async throws {
    try await runDrill {
      try await FailoverDrill(
        kind: .metaserverFailover, options: options, clusterDir: options.clusterDir
      ).run()
    }
  }
}

struct DrillPartitionCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "partition",
    abstract: "Isolate a partition's leader broker (SIGSTOP), check failover and its rejoin.",
    discussion: """
      Local mode (one host) pauses the leader of --topic/--partition with SIGSTOP so it \
      stops acting as leader, waits for the majority to elect a new leader and take a \
      write, resumes it with SIGCONT after --fault-duration-s at the earliest, and waits \
      until it is back in the ISR (truncated and caught up) and acts as a follower. Remote \
      mode runs --fault-command (e.g. iptables over ssh) and --recover-command instead.
      """)

  @OptionGroup var options: DrillFaultOptions

  func run() async throws {
    try await runDrill {
      try await FailoverDrill(kind: .partition, options: options, clusterDir: options.clusterDir)
        .run()
    }
  }
}
