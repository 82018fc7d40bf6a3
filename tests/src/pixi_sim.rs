//! pixi SOAP API simulator.
