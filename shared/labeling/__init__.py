"""What humans label next: the label queue's choice (``queue``), the Label Studio formats it is labeled in
(``label_studio``, with the shipped labeling interface) and the queue's files (``files``)."""
