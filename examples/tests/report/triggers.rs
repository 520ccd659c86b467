//! The trigger decisions (tables) and the watch loop with an injected clock.
