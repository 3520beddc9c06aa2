/**
 * The model's labels, shared by training, the live stream and the dialog policy (so none of them depends on another
 * for seven strings).
 */

/** The model's labels: the seed's seven, in this order (softmax index = position). */
export const EMOTION_LABELS = ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'] as const;
/** One of the seven emotion labels. */
export type EmotionLabel = (typeof EMOTION_LABELS)[number];
