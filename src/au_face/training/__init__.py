"""Making a model: the LightningModule, its losses and optimiser."""
