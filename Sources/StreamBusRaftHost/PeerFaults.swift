import NIOConcurrencyHelpers
import StreamBusRaft

/// Test-only fault injection in the peer transport: one-way message loss per peer.
///
/// Dropping outbound traffic to X on this node and inbound traffic from X on X's side are
/// different cuts: together they model asymmetric network failures (X hears us but we do
/// not hear X, or the reverse). Never set in production.
public final class PeerFaults: Sendable {
  private struct State {
    var dropOutbound: Set<NodeID> = []
    var dropInbound: Set<NodeID> = []
  }

  private let state = NIOLockedValueBox(State())

  public init() {}

  /// Drop (or stop dropping) every message this node sends to `peer`.
  public func setDropOutbound(to peer: NodeID, _ drop: Bool = true) {
    state.withLockedValue {
      if drop { $0.dropOutbound.insert(peer) } else { $0.dropOutbound.remove(peer) }
    }
  }

  /// Drop (or stop dropping) every message this node receives from `peer`.
  public func setDropInbound(from peer: NodeID, _ drop: Bool = true) {
    state.withLockedValue {
      if drop { $0.dropInbound.insert(peer) } else { $0.dropInbound.remove(peer) }
    }
  }

  /// Removes every fault.
  public func heal() {
    state.withLockedValue { $0 = State() }
  }

  public func dropsOutbound(to peer: NodeID) -> Bool {
    state.withLockedValue { $0.dropOutbound.contains(peer) }
  }

  public func dropsInbound(from peer: NodeID) -> Bool {
    state.withLockedValue { $0.dropInbound.contains(peer) }
  }
}
