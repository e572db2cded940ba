"""Training loops: the shared base (checkpoints, TensorBoard, tf.distribute) and the trainers."""
