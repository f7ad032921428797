// Messages exchanged between Raft nodes. One struct with a kind (as etcd does) keeps the
// step function a single switch and the wire encoding a single format; fields a kind does
// not use stay at their zero value.

/// One piece of a snapshot in transit. Snapshots are sent in chunks so a large state never
/// needs one huge message, and a transfer interrupted by message loss resumes at the byte
/// offset the follower reports instead of starting over.
public struct SnapshotChunk: Sendable, Hashable {
  public var metadata: SnapshotMetadata
  /// Size of the whole snapshot data.
  public var totalBytes: UInt64
  /// Position of `data` within the snapshot data.
  public var offset: UInt64
  public var data: [UInt8]

  public init(metadata: SnapshotMetadata, totalBytes: UInt64, offset: UInt64, data: [UInt8]) {
    self.metadata = metadata
    self.totalBytes = totalBytes
    self.offset = offset
    self.data = data
  }

  public var isLast: Bool { offset <= totalBytes && UInt64(data.count) == totalBytes - offset }
}

public struct Message: Sendable, Hashable {
  public enum Kind: UInt8, Sendable, Hashable, CaseIterable {
    /// Leader → follower: `entries` follow (`index`, `logTerm`); leader commit in `commit`.
    case appendEntries = 0
    /// Follower → leader: success with match `index`, or `reject` of previous index
    /// `index` with the hint `rejectHint` / `logTerm` (fast backtracking).
    case appendResponse = 1
    /// Leader → follower: keeps authority; `commit` is capped at the follower's match;
    /// `context` carries the newest ReadIndex request being confirmed.
    case heartbeat = 2
    case heartbeatResponse = 3
    /// Candidate → voter: last log position in `index` / `logTerm`.
    case requestVote = 4
    case voteResponse = 5
    /// Like requestVote but for term + 1 without changing anyone's term (PreVote).
    case requestPreVote = 6
    case preVoteResponse = 7
    /// Leader → follower: one chunk of a snapshot.
    case installSnapshot = 8
    /// Follower → leader: next expected byte of snapshot `index` in `snapshotOffset`.
    case snapshotResponse = 9
    /// Leader → transfer target: campaign now, skipping PreVote and leases.
    case timeoutNow = 10
    /// Follower → leader: a ReadIndex request forwarded with its `context`.
    case readIndex = 11
    /// Leader → follower: read `index` confirmed for `context`.
    case readIndexResponse = 12
  }

  public var kind: Kind
  public var from: NodeID
  public var to: NodeID
  public var term: Term
  public var logTerm: Term = 0
  public var index: LogIndex = 0
  public var commit: LogIndex = 0
  public var entries: [Entry] = []
  public var reject = false
  public var rejectHint: LogIndex = 0
  /// Vote requests sent because of a leadership transfer (or a forced campaign) override
  /// the voters' leases.
  public var isLeaderTransfer = false
  public var context: [UInt8] = []
  public var snapshotOffset: UInt64 = 0
  public var snapshot: SnapshotChunk?

  public init(kind: Kind, from: NodeID, to: NodeID, term: Term) {
    self.kind = kind
    self.from = from
    self.to = to
    self.term = term
  }

  /// Bytes of entry payload and snapshot data, for budgets.
  public var payloadByteCount: UInt64 {
    entries.reduce(0) { $0 + $1.byteCount } + UInt64(snapshot?.data.count ?? 0)
  }
}

extension Message: RaftEncodable {
  public func encode(into encoder: inout RaftEncoder) {
    encoder.write(kind.rawValue)
    encoder.write(from)
    encoder.write(to)
    encoder.write(term)
    encoder.write(logTerm)
    encoder.write(index)
    encoder.write(commit)
    encoder.write(reject)
    encoder.write(rejectHint)
    encoder.write(isLeaderTransfer)
    encoder.writeBytes(context)
    encoder.write(snapshotOffset)
    precondition(entries.count <= UInt32.max)
    encoder.write(UInt32(entries.count))
    for entry in entries { entry.encode(into: &encoder) }
    if let snapshot {
      encoder.write(true)
      snapshot.metadata.encode(into: &encoder)
      encoder.write(snapshot.totalBytes)
      encoder.write(snapshot.offset)
      encoder.writeBytes(snapshot.data)
    } else {
      encoder.write(false)
    }
  }

  public init(decoding decoder: inout RaftDecoder) throws {
    let kindOffset = decoder.offset
    let rawKind = try decoder.readUInt8("message kind")
    guard let kind = Kind(rawValue: rawKind) else {
      throw RaftDecodeError("unknown message kind \(rawKind)", offset: kindOffset)
    }
    let from = try decoder.readUInt64("from")
    let to = try decoder.readUInt64("to")
    let term = try decoder.readUInt64("term")
    self.init(kind: kind, from: from, to: to, term: term)
    logTerm = try decoder.readUInt64("log term")
    index = try decoder.readUInt64("index")
    commit = try decoder.readUInt64("commit")
    reject = try decoder.readBool("reject")
    rejectHint = try decoder.readUInt64("reject hint")
    isLeaderTransfer = try decoder.readBool("leader transfer")
    context = try decoder.readBytes("context")
    snapshotOffset = try decoder.readUInt64("snapshot offset")
    let entryCount = Int(try decoder.readUInt32("entry count"))
    // Each entry takes at least its header, so a count beyond that is a forgery.
    guard entryCount <= decoder.remainingByteCount / Entry.headerByteCount else {
      throw RaftDecodeError(
        "entry count \(entryCount) exceeds message size", offset: decoder.offset)
    }
    entries.reserveCapacity(entryCount)
    for _ in 0..<entryCount { entries.append(try Entry(decoding: &decoder)) }
    if try decoder.readBool("has snapshot") {
      let metadata = try SnapshotMetadata(decoding: &decoder)
      let totalBytes = try decoder.readUInt64("snapshot total bytes")
      let chunkOffset = decoder.offset
      let offset = try decoder.readUInt64("snapshot chunk offset")
      let data = try decoder.readBytes("snapshot chunk")
      let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
      guard !overflow, end <= totalBytes else {
        throw RaftDecodeError("snapshot chunk beyond total \(totalBytes)", offset: chunkOffset)
      }
      snapshot = SnapshotChunk(
        metadata: metadata, totalBytes: totalBytes, offset: offset, data: data)
    }
  }
}
