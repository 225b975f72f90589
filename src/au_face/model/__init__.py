"""The trained model for inference, pure torch (no Lightning): what a checkpoint holds."""
