import Foundation

/// A network fault in force in a lab; pass it to `NetworkLab.heal(_:)` to remove it.
public struct LabFault: Sendable, Hashable, CustomStringConvertible {
  public let id: Int
  /// What was done, e.g. "partition broker-1 | metaserver-1,metaserver-2,...".
  public let description: String
  /// Names of the nodes it involves; `heal(node:)` removes every fault naming the node.
  public let nodeNames: Set<String>
}

/// How a fault was made, so it can be undone exactly.
struct FaultRecord {
  struct IptablesRule {
    let namespace: String
    let chain: String
    let specification: [String]
  }

  struct ShapedInterface: Equatable {
    let namespace: String
    let interface: String
  }

  let fault: LabFault
  let rules: [IptablesRule]
  let shaped: [ShapedInterface]
}

/// Network faults. Every rule lives in the namespace of a node (or, for rate limits, also the
/// hub), never in the host. Rules are inserted at the top of the filter table's INPUT/OUTPUT
/// chains and deleted by the same specification when healed, so faults can overlap and be
/// healed one by one.
extension NetworkLab {
  /// Full partition between `group` and `others`, both directions: each node of `group`
  /// drops every packet from and to each node of `others` (iptables DROP: connections hang,
  /// as across a broken switch, rather than fail fast).
  @discardableResult
  public func partition(_ group: [LabNode], from others: [LabNode]) throws -> LabFault {
    let others = others.filter { !group.contains($0) }
    precondition(!group.isEmpty && !others.isEmpty, "a partition needs two non-empty sides")
    var rules: [FaultRecord.IptablesRule] = []
    for node in group {
      for other in others {
        rules.append(rule(node, "INPUT", ["-s", other.address, "-j", "DROP"]))
        rules.append(rule(node, "OUTPUT", ["-d", other.address, "-j", "DROP"]))
      }
    }
    return try install(
      "partition \(names(group)) | \(names(others))", nodes: group + others, rules: rules)
  }

  /// One-way partition: `node` drops everything it receives from `peers` but can still send
  /// to them (its TCP segments arrive; their answers and ACKs do not).
  @discardableResult
  public func oneWay(_ node: LabNode, dropIncomingFrom peers: [LabNode]) throws -> LabFault {
    let peers = peers.filter { $0 != node }
    precondition(!peers.isEmpty, "one-way partition without peers")
    let rules = peers.map { rule(node, "INPUT", ["-s", $0.address, "-j", "DROP"]) }
    return try install(
      "one-way: \(node.name) drops incoming from \(names(peers))", nodes: [node] + peers,
      rules: rules)
  }

  /// Random packet loss on `node`'s link: each packet in and out (to/from `peers`, or
  /// everyone when nil) is dropped with probability `percent`/100.
  @discardableResult
  public func loss(_ node: LabNode, percent: Int, peers: [LabNode]? = nil) throws -> LabFault {
    precondition((1...100).contains(percent), "loss percent must be 1...100")
    let probability = String(format: "%.4f", Double(percent) / 100)
    let statistic = ["-m", "statistic", "--mode", "random", "--probability", probability]
    var rules: [FaultRecord.IptablesRule] = []
    for peer in peers ?? [] {
      rules.append(rule(node, "INPUT", ["-s", peer.address] + statistic + ["-j", "DROP"]))
      rules.append(rule(node, "OUTPUT", ["-d", peer.address] + statistic + ["-j", "DROP"]))
    }
    if peers == nil {
      rules.append(rule(node, "INPUT", ["-i", Self.nodeInterface] + statistic + ["-j", "DROP"]))
      rules.append(rule(node, "OUTPUT", ["-o", Self.nodeInterface] + statistic + ["-j", "DROP"]))
    }
    return try install(
      "loss \(percent)% on \(node.name)" + (peers.map { " to/from \(names($0))" } ?? ""),
      nodes: [node] + (peers ?? []), rules: rules)
  }

  /// Connection resets: every TCP segment `node` receives from or sends to `peers` (everyone
  /// when nil) is answered with a RST (REJECT --reject-with tcp-reset), so connections on
  /// both ends fail at once and new ones are refused.
  @discardableResult
  public func reset(_ node: LabNode, peers: [LabNode]? = nil) throws -> LabFault {
    // Resets themselves pass: REJECT's own RST leaves through OUTPUT, where a rule matching
    // it would swallow it (REJECT never answers a RST).
    let reject = [
      "-p", "tcp", "!", "--tcp-flags", "RST", "RST", "-j", "REJECT", "--reject-with", "tcp-reset",
    ]
    var rules: [FaultRecord.IptablesRule] = []
    if let peers {
      for peer in peers {
        rules.append(rule(node, "INPUT", ["-s", peer.address] + reject))
        rules.append(rule(node, "OUTPUT", ["-d", peer.address] + reject))
      }
    } else {
      rules.append(rule(node, "INPUT", ["-i", Self.nodeInterface] + reject))
      rules.append(rule(node, "OUTPUT", ["-o", Self.nodeInterface] + reject))
    }
    return try install(
      "tcp resets on \(node.name)" + (peers.map { " to/from \(names($0))" } ?? ""),
      nodes: [node] + (peers ?? []), rules: rules)
  }

  /// Slow link: `node`'s traffic in both directions is limited to `kbit` kbit/s with a token
  /// bucket (`tc tbf`, on its `eth0` for what it sends and on the hub's end of its veth for
  /// what it receives). Packets over the limit wait up to 400 ms, then are dropped.
  @discardableResult
  public func rateLimit(_ node: LabNode, kbit: Int) throws -> LabFault {
    precondition(kbit > 0, "rate limit must be positive")
    let shaped = [
      FaultRecord.ShapedInterface(namespace: node.namespace, interface: Self.nodeInterface),
      FaultRecord.ShapedInterface(namespace: hubNamespace, interface: node.hubInterface),
    ]
    let alreadyShaped = lock.withLock {
      faults.values.contains { record in record.shaped.contains { shaped.contains($0) } }
    }
    precondition(!alreadyShaped, "\(node.name) is already rate limited; heal it first")
    let ip = try LabCommand.requireTool("ip")
    let tc = try LabCommand.requireTool("tc")
    var applied: [FaultRecord.ShapedInterface] = []
    do {
      for target in shaped {
        try LabCommand.check([
          ip, "netns", "exec", target.namespace, tc, "qdisc", "replace", "dev", target.interface,
          "root", "tbf", "rate", "\(kbit)kbit", "burst", "32kbit", "latency", "400ms",
        ])
        applied.append(target)
      }
    } catch {
      removeShaping(applied)
      throw error
    }
    return record(
      FaultRecord(
        fault: LabFault(
          id: faultCounter.next(), description: "rate limit \(kbit) kbit/s on \(node.name)",
          nodeNames: [node.name]),
        rules: [], shaped: shaped))
  }

  /// Removes one fault.
  public func heal(_ fault: LabFault) throws {
    guard let record = lock.withLock({ faults.removeValue(forKey: fault.id) }) else { return }
    try undo(record)
  }

  /// Removes every fault that involves `node` (on either side).
  public func heal(node: LabNode) throws {
    let records = lock.withLock {
      let matching = faults.values.filter { $0.fault.nodeNames.contains(node.name) }
      for record in matching { faults.removeValue(forKey: record.fault.id) }
      return matching.sorted { $0.fault.id > $1.fault.id }
    }
    for record in records { try undo(record) }
  }

  /// Removes every fault in force.
  public func healAll() throws {
    let records = lock.withLock {
      let all = faults.values.sorted { $0.fault.id > $1.fault.id }
      faults = [:]
      return all
    }
    var firstError: Error?
    for record in records {
      do { try undo(record) } catch { firstError = firstError ?? error }
    }
    if let firstError { throw firstError }
  }

  /// The faults in force, oldest first.
  public var activeFaults: [LabFault] {
    lock.withLock { faults.values.map(\.fault).sorted { $0.id < $1.id } }
  }

  /// `iptables -S` and `tc qdisc show` of a node, for failure reports.
  public func networkRules(of node: LabNode) -> String {
    let iptables = try? LabCommand.run(
      LabCommand.inNamespace(node.namespace, ["iptables", "-w", "5", "-S"]))
    let tc = try? LabCommand.run(LabCommand.inNamespace(node.namespace, ["tc", "qdisc", "show"]))
    return (iptables?.stdout ?? "") + (tc?.stdout ?? "")
  }

  // MARK: - Internals

  private func rule(_ node: LabNode, _ chain: String, _ specification: [String])
    -> FaultRecord.IptablesRule
  {
    FaultRecord.IptablesRule(namespace: node.namespace, chain: chain, specification: specification)
  }

  private func names(_ nodes: [LabNode]) -> String {
    nodes.map(\.name).joined(separator: ",")
  }

  private func install(
    _ description: String, nodes: [LabNode], rules: [FaultRecord.IptablesRule]
  ) throws -> LabFault {
    // One iptables-restore transaction per namespace: a node's rules take effect at once,
    // so a fault's start time is one instant, not a series of single-rule commands.
    let namespaces = orderedNamespaces(rules)
    var applied: [String] = []
    do {
      for namespace in namespaces {
        try applyRules(rules.filter { $0.namespace == namespace }, action: "-I", in: namespace)
        applied.append(namespace)
      }
    } catch {
      for namespace in applied {
        _ = try? applyRules(rules.filter { $0.namespace == namespace }, action: "-D", in: namespace)
      }
      throw error
    }
    return record(
      FaultRecord(
        fault: LabFault(
          id: faultCounter.next(), description: description, nodeNames: Set(nodes.map(\.name))),
        rules: rules, shaped: []))
  }

  private func orderedNamespaces(_ rules: [FaultRecord.IptablesRule]) -> [String] {
    var seen: Set<String> = []
    return rules.map(\.namespace).filter { seen.insert($0).inserted }
  }

  /// `iptables-restore --noflush` of `rules` with `action` (-I or -D) in one namespace.
  private func applyRules(
    _ rules: [FaultRecord.IptablesRule], action: String, in namespace: String
  ) throws {
    let lines = rules.map { ([action, $0.chain] + $0.specification).joined(separator: " ") }
    let script = "*filter\n" + lines.joined(separator: "\n") + "\nCOMMIT\n"
    let file = directory.appendingPathComponent("rules-\(faultCounter.next()).txt")
    try script.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    try LabCommand.check(
      LabCommand.inNamespace(namespace, ["iptables-restore", "-w", "5", "--noflush", file.path]))
  }

  private func record(_ record: FaultRecord) -> LabFault {
    lock.withLock { faults[record.fault.id] = record }
    return record.fault
  }

  private func undo(_ record: FaultRecord) throws {
    let failures = removeRules(record.rules) + removeShaping(record.shaped)
    if !failures.isEmpty {
      throw HarnessError(
        "healing '\(record.fault.description)' failed: \(failures.joined(separator: "; "))")
    }
  }

  @discardableResult
  private func removeRules(_ rules: [FaultRecord.IptablesRule]) -> [String] {
    var failures: [String] = []
    for namespace in orderedNamespaces(rules) {
      do {
        try applyRules(
          rules.filter { $0.namespace == namespace }.reversed(), action: "-D", in: namespace)
      } catch {
        failures.append("\(error)")
      }
    }
    return failures
  }

  @discardableResult
  private func removeShaping(_ shaped: [FaultRecord.ShapedInterface]) -> [String] {
    var failures: [String] = []
    for target in shaped {
      do {
        try LabCommand.check(
          LabCommand.inNamespace(
            target.namespace, ["tc", "qdisc", "del", "dev", target.interface, "root"]))
      } catch {
        failures.append("\(error)")
      }
    }
    return failures
  }
}
