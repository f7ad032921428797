import StreamBusRaft

/// Why a `RaftHost` call failed.
public struct RaftHostError: Error, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
      case notLeader
      case proposalDropped
      case proposalOverwritten
      case outcomeUnknown
      case timedOut
      case reconfigurationInProgress
      case learnerNotCaughtUp
      case invalidRequest
      case invalidConfiguration
      case cancelled
      case shutDown
      case stopped
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// Only the leader does this; `leaderID` / `leaderAddresses` name the leader if known.
    public static let notLeader = Code(.notLeader)
    /// The leader refused the entry (a leadership transfer is under way, or too many
    /// uncommitted bytes); retrying later may succeed.
    public static let proposalDropped = Code(.proposalDropped)
    /// The entry was appended but a new leader replaced it: it will never be applied.
    public static let proposalOverwritten = Code(.proposalOverwritten)
    /// This node's log was replaced by a snapshot before the entry was seen applied: it may
    /// or may not have been committed.
    public static let outcomeUnknown = Code(.outcomeUnknown)
    public static let timedOut = Code(.timedOut)
    /// Another membership change is not applied yet.
    public static let reconfigurationInProgress = Code(.reconfigurationInProgress)
    public static let learnerNotCaughtUp = Code(.learnerNotCaughtUp)
    public static let invalidRequest = Code(.invalidRequest)
    public static let invalidConfiguration = Code(.invalidConfiguration)
    /// The calling task was cancelled (the entry may still be applied).
    public static let cancelled = Code(.cancelled)
    public static let shutDown = Code(.shutDown)
    /// A storage, state-machine or safety failure stopped the node; restart the process.
    public static let stopped = Code(.stopped)

    public var description: String { base.rawValue }
  }

  public let code: Code
  public let message: String
  /// For `notLeader`: the leader this node knows of.
  public let leaderID: NodeID?
  public let leaderAddresses: PeerAddresses?

  public init(
    _ code: Code, _ message: String, leaderID: NodeID? = nil,
    leaderAddresses: PeerAddresses? = nil
  ) {
    self.code = code
    self.message = message
    self.leaderID = leaderID
    self.leaderAddresses = leaderAddresses
  }

  public var description: String { "\(code): \(message)" }
}
