"""The simulated Vast marketplace: the same REST API, served in process or on loopback."""
