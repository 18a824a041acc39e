"""What a trained model tells: test-set evaluation (evaluate.py), saliency maps, the activations
inside the network, a photo classified, and the model exported to take home."""
